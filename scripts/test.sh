# shellcheck shell=bash
# Test envs: the unit, integration, functional and cli tiers. Sourced by ./tox
# after lib.sh.
#
# Tiers are build tags: untagged tests are unit tests and need
# nothing but Go (and /usr/bin/python3 for the runtime's own tests);
# `integration` tests start private MariaDB, RabbitMQ and Swift servers from Debian's
# packages; `functional` starts the all-in-one server and talks HTTP to it;
# `cli` drives it with the real `openstack` client. Both of the last two use
# the binaries that build_binaries made once for the whole ./tox run
# (QINLING_TEST_BIN), and run against the devstack stack instead when
# QINLING_REAL_STACK=1 (scripts/devstack.sh: functional-real, cli-real).
#
# run_envs calls each env inside an `||` list, where bash ignores `set -e`:
# every step that can fail is checked explicitly.

register_env unit "go test -race ./... (no build tags) and the python3 runtime's unittest suite"
env_unit() {
	require_go || return
	local rc=0
	# Before go test: orchestrator/local runs real Node.js workers too.
	[[ -x /usr/bin/node ]] || ensure_packages nodejs || return
	go test -race -count=1 "${GO_TEST_ARGS[@]}" ./... || rc=1
	if [[ -d runtimes/python3 ]]; then
		log "python3 runtime: unittest discover in runtimes/python3"
		# Debian's interpreter on purpose: python3 on PATH may be a pyenv
		# shim that differs from what the local orchestrator runs.
		/usr/bin/python3 -m unittest discover -s runtimes/python3 -p 'test_*.py' -v || rc=1
	fi
	if [[ -d runtimes/nodejs ]]; then
		log "nodejs runtime: node --test"
		# Named explicitly: node --test's default patterns miss test_*.js.
		# A test cancelled by its suite's timeout may leave a server it
		# started: the file kills what is left when it ends, and the runner
		# is bounded so that a leak can never hang CI.
		timeout -k 10 600 /usr/bin/node --test runtimes/nodejs/test_server.js || rc=1
	fi
	return $rc
}

register_env functional "go test -tags functional ./tests/functional/... against the all-in-one server" bin
env_functional() {
	require_go || return
	need_binaries || return
	# The hostile-function suite runs Node.js functions too; TestMetrics
	# checks /metrics with Prometheus's promtool.
	[[ -x /usr/bin/node ]] || ensure_packages nodejs || return
	[[ -x /usr/bin/promtool ]] || ensure_packages prometheus || return
	# Most of its time the tests wait (for workers, sleeping functions,
	# timeouts), and go test's default -parallel is GOMAXPROCS, two here:
	# the two halves of TestLoadBurst alone held both slots for 2.5 min.
	# Tests that would feel the others keep to themselves: the burst runs
	# on a private server (a project of its own), the hostile functions'
	# limits are far from what a loaded machine takes. A later -parallel
	# in GO_TEST_ARGS wins.
	go test -tags functional -count=1 -timeout 15m -v -parallel "${FUNCTIONAL_PARALLEL:-8}" "${GO_TEST_ARGS[@]}" ./tests/functional/...
}

register_env integration "go test -tags integration on the packages that have integration tests: tests that start their own MariaDB, RabbitMQ and Swift (Debian's)"
env_integration() {
	require_go || return
	# Swift (with its S3 API) for the storage backends' tests.
	ensure_packages mariadb-server mariadb-client rabbitmq-server \
		swift-proxy swift-account swift-container swift-object memcached || return
	# Only the packages the tag changes (their unit tests run again with
	# their integration tests): every other package's tests are the unit
	# tier's, which already ran them (with -race), and were its slowest
	# part here too (orchestrator/local alone took 97 s).
	local pkgs
	mapfile -t pkgs < <(tagged_packages integration)
	if ((${#pkgs[@]} == 0)); then
		log "integration: no package has a test with the integration tag"
		return 1
	fi
	go test -tags integration -count=1 -timeout 20m "${GO_TEST_ARGS[@]}" "${pkgs[@]}"
}

register_env cli "go test -tags cli ./tests/cli/...: the real openstack CLI against the all-in-one server" bin
env_cli() {
	require_go || return
	need_binaries || return
	# curl invokes the webhook, as a user without a token would.
	ensure_packages python3-qinlingclient python3-openstackclient curl || return
	go test -tags cli -count=1 -timeout 20m -v "${GO_TEST_ARGS[@]}" ./tests/cli/...
}

# ensure_packages PKG...: apt-get install the Debian packages that are
# missing (as root; otherwise say what to install). Package scripts must not
# start the system's daemons of those packages (tests start private ones), so
# a policy-rc.d forbidding it is in place during the install when the machine
# has none.
ensure_packages() {
	local p missing=() policy=/usr/sbin/policy-rc.d made=0 rc=0
	for p in "$@"; do
		dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
	done
	((${#missing[@]})) || return 0
	if [[ $(id -u) -ne 0 ]]; then
		log "missing Debian packages: apt-get install ${missing[*]}"
		return 1
	fi
	log "installing ${missing[*]} from Debian"
	if [[ ! -e $policy ]]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made=1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get update -q &&
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" || rc=1
	((made)) && rm -f "$policy"
	return $rc
}

register_env bench "go test -tags bench ./tests/bench/: latency, throughput, CPU and memory table (not part of plain ./tox)" bin
env_bench() {
	require_go || return
	need_binaries || return
	go test -tags bench -count=1 -timeout 60m -run TestBench -v "${GO_TEST_ARGS[@]}" ./tests/bench/ || return
	# What metrics and accounting add to each execution, beside the rows
	# above (docs/operations.md, "Cost").
	echo "tox: bench: the cost of metrics and accounting per execution"
	go test -run '^$' -bench 'BenchmarkFinish|BenchmarkPerExecution' -benchtime 3000x -count 3 -benchmem ./pkg/db ./pkg/metrics
}

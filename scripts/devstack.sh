# shellcheck shell=bash
# Real-stack envs: bring devstack up, run the functional and CLI tiers
# against it (QINLING_REAL_STACK=1), take it down. Sourced by ./tox after
# lib.sh and test.sh. STACK_DIR and every other devstack/settings variable
# pass through from the caller's environment.

register_env devstack "devstack/stack.sh: MariaDB, RabbitMQ, etcd, Keystone, Swift, qinling-api and engines on loopback, packages in Swift (root)"
env_devstack() {
	require_go || return
	# Packages in Swift (which starts the swift service), so that the
	# real-stack tiers prove it with the real CLI (docs/storage.md, "What CI
	# proves"); the k8s env's stack proves S3. QINLING_STORAGE=local (or s3)
	# ./tox -e devstack picks another.
	QINLING_STORAGE=${QINLING_STORAGE:-swift} devstack/stack.sh
}

register_env functional-real "the functional tier against the devstack stack (QINLING_REAL_STACK=1; run devstack first)"
env_functional_real() {
	require_go || return
	[[ -x /usr/bin/promtool ]] || ensure_packages prometheus || return
	# Two tests at a time (go test's default here), not the functional
	# tier's eight: at eight the stack's one Keystone answered 503
	# ("Identity service unavailable") and TestRouteWarmOwner's concurrent
	# calls no longer met, on two cores; and TestLoadBurst's 1,800
	# executions are the demo project's here, the first page of the
	# unfiltered lists the tests beside it read (tests/functional/
	# load_test.go). What only waits runs beside the others anyway
	# (TestJobsFireOnceWithTwoAPIs).
	QINLING_REAL_STACK=1 go test -tags functional -count=1 -timeout 20m -v "${GO_TEST_ARGS[@]}" ./tests/functional/...
}

register_env cli-real "the cli tier against the devstack stack: Keystone password auth as demo, admin for runtimes"
env_cli_real() {
	require_go || return
	ensure_packages python3-qinlingclient python3-openstackclient curl || return
	QINLING_REAL_STACK=1 go test -tags cli -count=1 -timeout 20m -v "${GO_TEST_ARGS[@]}" ./tests/cli/...
}

register_env unstack "devstack/unstack.sh: stop every daemon devstack started (data stays; UNSTACK_ARGS=--purge deletes it)"
env_unstack() {
	# shellcheck disable=SC2086
	devstack/unstack.sh ${UNSTACK_ARGS:-}
}

register_env chaos "go test -tags chaos ./tests/chaos/: async executions under kill -9 of the all-in-one and, at the same time, on the devstack stack (run devstack first) under engine SIGKILLs and restarts of RabbitMQ, MariaDB, etcd and the API, and the usage workload whose four records must agree; last before unstack" bin
env_chaos() {
	require_go || return
	need_binaries || return
	local rc=0
	# Knobs: QINLING_CHAOS_EXECUTIONS, _CLIENTS, _KILLS, _INTERVAL, _SETTLE
	# (tests/chaos/chaos_test.go); GO_TEST_ARGS may pick one with -run. The
	# devstack part runs QINLING_CHAOS_DEVSTACK_EXECUTIONS executions
	# (10,000: about 2.5 min in a CI-shaped run, docs/reliability.md).
	#
	# The all-in-one part touches nothing of the stack (a private server on
	# ports of its own), and much of it waits between its kills: it runs
	# beside the devstack part, its output kept apart and shown once both
	# have ended.
	local aio_out aio_pid
	aio_out=$(mktemp)
	go test -tags chaos -count=1 -timeout 40m -v -run TestChaosAllInOne "${GO_TEST_ARGS[@]}" ./tests/chaos/ >"$aio_out" 2>&1 &
	aio_pid=$!
	QINLING_REAL_STACK=1 QINLING_CHAOS_EXECUTIONS=${QINLING_CHAOS_DEVSTACK_EXECUTIONS:-10000} \
		go test -tags chaos -count=1 -timeout 90m -v -run 'TestChaosDevstack|TestUsageSourcesAgree' "${GO_TEST_ARGS[@]}" ./tests/chaos/ || rc=1
	wait "$aio_pid" || rc=1
	log "chaos: the all-in-one part (TestChaosAllInOne), run beside the devstack part:"
	cat "$aio_out"
	rm -f "$aio_out"
	return $rc
}

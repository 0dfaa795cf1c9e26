# shellcheck shell=bash
# Test envs: the unit, functional and cli tiers. Sourced by ./tox after lib.sh.
#
# Tiers are build tags (style §8): untagged tests are unit tests and need
# nothing but Go (and /usr/bin/python3 for the runtime's own tests);
# `functional` starts the all-in-one server and talks HTTP to it; `cli` drives
# it with the real `openstack` client. Both tagged tiers use the binaries that
# build_binaries made once for the whole ./tox run (QINLING_TEST_BIN).
#
# run_envs calls each env inside an `||` list, where bash ignores `set -e`:
# every step that can fail is checked explicitly.

register_env unit "go test -race ./... (no build tags) and the python3 runtime's unittest suite"
env_unit() {
	require_go || return
	local rc=0
	go test -race -count=1 "${GO_TEST_ARGS[@]}" ./... || rc=1
	if [[ -d runtimes/python3 ]]; then
		log "python3 runtime: unittest discover in runtimes/python3"
		# Debian's interpreter on purpose: python3 on PATH may be a pyenv
		# shim that differs from what the local orchestrator runs.
		/usr/bin/python3 -m unittest discover -s runtimes/python3 -p 'test_*.py' -v || rc=1
	fi
	return $rc
}

register_env functional "go test -tags functional ./tests/functional/... against the all-in-one server" bin
env_functional() {
	require_go || return
	need_binaries || return
	go test -tags functional -count=1 -timeout 15m -v "${GO_TEST_ARGS[@]}" ./tests/functional/...
}

register_env cli "go test -tags cli ./tests/cli/...: the real openstack CLI against the all-in-one server" bin
env_cli() {
	require_go || return
	need_binaries || return
	if [[ ! -x /usr/bin/openstack ]] ||
		! compgen -G '/usr/lib/python3/dist-packages/python_qinlingclient-*.egg-info' >/dev/null; then
		if [[ $(id -u) -ne 0 ]]; then
			log "the openstack CLI is missing: apt-get install python3-openstackclient python3-qinlingclient"
			return 1
		fi
		log "installing the openstack CLI from Debian (python3-qinlingclient, python3-openstackclient)"
		DEBIAN_FRONTEND=noninteractive apt-get update -q &&
			DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
				python3-qinlingclient python3-openstackclient || return 1
	fi
	go test -tags cli -count=1 -timeout 20m -v "${GO_TEST_ARGS[@]}" ./tests/cli/...
}

# shellcheck shell=bash
# The k8s env: qinling-go's kubernetes orchestrator on a real single-node
# Kubernetes that devstack builds and runs on this machine. Sourced by ./tox
# after lib.sh.
#
# It runs a stack of its own (K8S_STACK_DIR, default /opt/qinling-k8s-stack,
# and a port set of its own), so it can share the machine with the default
# devstack stack; each port can be moved with K8S_<SETTING>, e.g.
# K8S_QINLING_API_PORT=27071. K8S_ENABLED_SERVICES narrows what it starts
# (e.g. "kubernetes" alone). Phases, each timed:
#   1. snapshot the host state (devstack/tools/hoststate.sh)
#   2. QINLING_ORCHESTRATOR=kubernetes QINLING_STORAGE=s3 devstack/stack.sh
#      (K8S_STORAGE picks another package storage)
#   3. go test -tags k8s ./orchestrator/kubernetes/... (the conformance
#      suite, as the engines' identity) and ./tests/k8s/..., then the CLI
#      tests that depend on the orchestrator and the store (tests/cli)
#   4. devstack/unstack.sh (--purge when everything passed; otherwise the
#      logs stay in K8S_STACK_DIR/logs)
#   5. snapshot again: any difference fails the env, with the diff.

# k8s_settings: the devstack settings of the k8s stack, as NAME:DEFAULT.
K8S_ENV_SETTINGS=(
	QINLING_API_PORT:27070 KEYSTONE_PORT:25000 MYSQL_PORT:23306
	RABBIT_PORT:25682 RABBIT_DIST_PORT:25683 RABBIT_EPMD_PORT:24369
	ETCD_PORT:22379 ETCD_PEER_PORT:22380
	KUBE_ETCD_PORT:22479 KUBE_ETCD_PEER_PORT:22480
	KUBE_CONTROLLER_MANAGER_PORT:22257 KUBE_SCHEDULER_PORT:22259
	SWIFT_PORT:28880 SWIFT_ACCOUNT_PORT:26012 SWIFT_CONTAINER_PORT:26011
	SWIFT_OBJECT_PORT:26010 MEMCACHED_PORT:21311
)

# k8s_conformance_env: orchestrator/kubernetes's real-cluster suite reads
# QINLING_K8S_*; point them at the stack's cluster (stack.env).
k8s_conformance_env() {
	local key val
	while IFS='=' read -r key val; do
		case $key in
		KUBECONFIG_QINLING) export QINLING_K8S_KUBECONFIG=$val ;;
		K8S_NAMESPACE) export QINLING_K8S_NAMESPACE=$val ;;
		K8S_PYTHON_IMAGE) export QINLING_K8S_IMAGE=$val ;;
		K8S_HELLO_IMAGE) export QINLING_K8S_IMAGE_FUNCTION=$val ;;
		esac
	done <"$STACK_DIR/stack.env"
	export QINLING_K8S_PULL_POLICY=Never
}

# k8s_tagged_tests DIR: a -run pattern matching the top-level tests of the
# test files under DIR built with the k8s tag, and no other test.
k8s_tagged_tests() {
	local names
	names=$(grep -rlE --include='*_test.go' '^//go:build .*\bk8s\b' "$1" |
		xargs -r grep -hoE '^func Test[A-Za-z0-9_]*\(' | sed -E 's/^func (Test[A-Za-z0-9_]*)\(/\1/' | sort -u | paste -sd'|')
	echo "^(${names:-NoK8sTaggedTest})\$"
}

# k8s_env_lock DIR: take the env's machine-wide lock, a directory holding the
# PID of the ./tox that holds it, released when the env's subshell exits. A
# lock whose holder is gone (a run killed outright) is taken over.
k8s_env_lock() {
	local lock=$1 holder
	mkdir -p "$(dirname "$lock")"
	if ! mkdir "$lock" 2>/dev/null; then
		holder=$(cat "$lock/pid" 2>/dev/null || true)
		if [[ -n $holder ]] && kill -0 "$holder" 2>/dev/null; then
			log "k8s: another ./tox -e k8s (PID $holder) runs on this machine, whose Kubernetes node is one per machine; wait for it"
			return 1
		fi
		log "k8s: taking over the lock of a run that is gone (PID ${holder:-unknown})"
		rm -rf -- "$lock"
		mkdir "$lock" || return 1
	fi
	echo "$$" >"$lock/pid"
	# shellcheck disable=SC2064 # the path is fixed now
	trap "rm -rf -- '$lock'" EXIT
}

register_env k8s "real single-node Kubernetes via devstack (own STACK_DIR and ports): host snapshot, stack.sh, go test -tags k8s, unstack.sh, snapshot diff (root)"
env_k8s() {
	require_go || return
	if [[ $(id -u) -ne 0 ]]; then
		log "k8s: needs root (network and mount namespaces, cgroups, apt)"
		return 1
	fi
	local pair name override
	export STACK_DIR=${K8S_STACK_DIR:-/opt/qinling-k8s-stack}
	# The cluster is the machine's (its host link, routes, /var/lib/kubelet,
	# /run/containerd): two runs would stack and unstack under each other,
	# so the second one stops here, as does a run next to a devstack
	# cluster started by hand.
	k8s_env_lock /run/lock/qinling-go-k8s-env || return 1
	if ip link show k8sveth0 >/dev/null 2>&1; then
		log "k8s: a devstack Kubernetes already runs on this machine (link k8sveth0); stop it first with STACK_DIR=<its dir> devstack/unstack.sh"
		return 1
	fi
	export QINLING_ORCHESTRATOR=kubernetes
	# Packages in Swift's S3 API (stack.sh adds the swift service before
	# qinling): the CLI tier proves the Kubernetes orchestrator over S3, as
	# the default stack proves Swift (docs/storage.md, "What CI proves").
	export QINLING_STORAGE=${K8S_STORAGE:-s3}
	# Idle workers go after 30 s (tests/k8s waits for that).
	export QINLING_FUNCTION_EXPIRATION=${K8S_FUNCTION_EXPIRATION:-30}
	export ENABLED_SERVICES=${K8S_ENABLED_SERVICES:-mariadb rabbitmq etcd keystone kubernetes qinling}
	for pair in "${K8S_ENV_SETTINGS[@]}"; do
		name=${pair%%:*}
		override=K8S_$name
		export "$name=${!override:-${pair#*:}}"
	done

	local work rc=0 t0 times=() hoststate=devstack/tools/hoststate.sh
	work=$(mktemp -d "${TMPDIR:-/tmp}/qinling-k8s-env.XXXXXX")
	# kubectl's discovery cache, which would otherwise land in ~/.kube.
	export KUBECACHEDIR=$work/kubectl-cache

	t0=$SECONDS
	"$hoststate" >"$work/before.txt"
	times+=("snapshot $((SECONDS - t0))s")

	t0=$SECONDS
	log "k8s: devstack/stack.sh into $STACK_DIR (services: $ENABLED_SERVICES)"
	if devstack/stack.sh; then
		times+=("stack.sh $((SECONDS - t0))s")
		t0=$SECONDS
		# The orchestrator's conformance suite needs only the cluster: as
		# the engines' identity, on the devstack images.
		k8s_conformance_env
		# Only its k8s-tagged tests: the package's other tests are the unit
		# tier's (with -race), and took about 25 s more here.
		local conformance=("${GO_TEST_ARGS[@]}")
		((${#conformance[@]})) || conformance=(-run "$(k8s_tagged_tests orchestrator/kubernetes)")
		go test -tags k8s -count=1 -timeout 30m -v "${conformance[@]}" ./orchestrator/kubernetes/... || rc=1
		times+=("go test orchestrator/kubernetes $((SECONDS - t0))s")
		t0=$SECONDS
		# Only the stack's own services: the tier must not depend on
		# qinling when K8S_ENABLED_SERVICES leaves it out.
		local run=("${GO_TEST_ARGS[@]}")
		if [[ " $ENABLED_SERVICES " != *" qinling "* && ${#run[@]} -eq 0 ]]; then
			run=(-run '^TestCluster_')
			log "k8s: qinling is not in the stack: only the cluster tests (-run ^TestCluster_)"
		fi
		go test -tags k8s -count=1 -timeout 30m -v "${run[@]}" ./tests/k8s/... || rc=1
		times+=("go test tests/k8s $((SECONDS - t0))s")
		if [[ " $ENABLED_SERVICES " == *" qinling "* && ${#GO_TEST_ARGS[@]} -eq 0 ]]; then
			# The CLI on Kubernetes workers: what depends on the orchestrator
			# and the package store (functions and executions, workers, the
			# packages in S3). The rest of TestCLI (versions, aliases,
			# webhooks, job updates) does not, and cli-real runs it. Its
			# cron job runs here too: started before the groups, it ends
			# in cron_job, which deletes its function (the runtime could
			# not be deleted otherwise).
			t0=$SECONDS
			ensure_packages python3-qinlingclient python3-openstackclient curl || rc=1
			QINLING_REAL_STACK=1 go test -tags cli -count=1 -timeout 20m -v \
				-run '^(TestCLI|TestCLIPackagesInStore)$/^(groups|cron_job)$/^(functions|workers)$' ./tests/cli/... || rc=1
			times+=("go test tests/cli $((SECONDS - t0))s")
		fi
	else
		rc=1
		times+=("stack.sh FAILED after $((SECONDS - t0))s")
	fi

	t0=$SECONDS
	local unstack_args=()
	((rc == 0)) && unstack_args=(--purge)
	devstack/unstack.sh "${unstack_args[@]}" || rc=1
	times+=("unstack.sh $((SECONDS - t0))s")
	((rc == 0)) || log "k8s: the stack's logs stay in $STACK_DIR/logs"

	"$hoststate" >"$work/after.txt"
	if ! diff -u "$work/before.txt" "$work/after.txt" >"$work/diff.txt"; then
		log "k8s: the host state after unstack.sh differs from before stack.sh:"
		cat "$work/diff.txt" >&2
		rc=1
	else
		log "k8s: host state after unstack.sh is identical to before stack.sh"
	fi
	rm -rf -- "$work"
	log "k8s: phases: ${times[*]}"
	return $rc
}

# shellcheck shell=bash
# devstack/lib/kubernetes.sh: a real single-node Kubernetes for the
# kubernetes orchestrator (QINLING_ORCHESTRATOR=kubernetes), built from the
# Go module proxy and run by PID like every other daemon of the stack.
# Sourced, never executed. docs/kubernetes.md tells the whole story.
#
# Layout ("layout B"): the control plane (its own etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler) runs on the host; containerd, the
# kubelet and kube-proxy run inside one network + mount namespace of their
# own (the "node"), held open by a sleeping process, kube-netns. A veth pair
# joins the two: k8sveth0 = KUBE_HOST_IP/30 on the host, k8sveth1 =
# KUBE_NODE_IP/30 in the node. The CNI bridge k8sbr0 (pods, KUBE_POD_CIDR)
# and every iptables rule kube-proxy writes live in the node's namespace;
# the host only gets two routes (pods and Services via KUBE_NODE_IP), which
# unstack removes. Inside the node's mount namespace three files are bound
# over the /proc/sys entries the kubelet insists on (vm.overcommit_memory=1,
# kernel.panic=10, kernel.panic_on_oops=1), so the machine keeps its own,
# and fresh tmpfs cover /run, /var/lib and /var/log, so nothing the node
# writes at fixed paths outlives it.
#
# $STACK_DIR/kubernetes: pki/ (CA, certificates, tokens), *.kubeconfig (one
# per component, admin, and qinling for the engines), etcd/, containerd/
# (root, state, socket, config), kubelet/, cni/, images/ (the OCI tars).
# The kube-all binary is cached outside STACK_DIR (KUBE_CACHE_DIR).

KUBERNETES_PACKAGES=(containerd runc containernetworking-plugins busybox-static iptables etcd-server gcc openssl curl)

# The images stack.sh builds and imports (no registry anywhere: pods use
# them with imagePullPolicy Never).
K8S_IMAGE_PREFIX=localhost/qinling-go
K8S_PAUSE_IMAGE=$K8S_IMAGE_PREFIX/pause:latest
K8S_PYTHON_IMAGE=$K8S_IMAGE_PREFIX/python3-runtime:latest
K8S_NODEJS_IMAGE=$K8S_IMAGE_PREFIX/nodejs-runtime:latest
K8S_HELLO_IMAGE=$K8S_IMAGE_PREFIX/hello-image:latest
# The Python runtime image under a second name, so that a runtime update
# (a rolling update of its pool) can be tried with an image that works.
K8S_PYTHON_IMAGE_ALT=$K8S_IMAGE_PREFIX/python3-runtime:alt

# The components kube-all holds; $BIN_DIR/NAME is a symlink to it.
KUBE_COMPONENTS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)
# Identities with a static token (pki/tokens.csv) and a kubeconfig each.
KUBE_IDENTITIES=(admin kubelet controller-manager scheduler proxy qinling)

# kubernetes_paths: the files of $STACK_DIR/kubernetes and the addresses
# derived from the settings.
kubernetes_paths() {
	KUBE_DIR=$STACK_DIR/kubernetes
	KUBE_PKI=$KUBE_DIR/pki
	KUBE_CONTAINERD_DIR=$KUBE_DIR/containerd
	KUBE_CONTAINERD_SOCK=$KUBE_CONTAINERD_DIR/containerd.sock
	KUBE_KUBELET_DIR=$KUBE_DIR/kubelet
	KUBE_CNI_DIR=$KUBE_DIR/cni
	KUBE_IMAGE_DIR=$KUBE_DIR/images
	KUBECONFIG_ADMIN=$KUBE_DIR/admin.kubeconfig
	KUBECONFIG_QINLING=$KUBE_DIR/qinling.kubeconfig
	KUBE_SERVER=https://$KUBE_HOST_IP:$KUBE_APISERVER_PORT
	# First addresses of the pod and Service ranges: the bridge (the pods'
	# gateway) and the `kubernetes` Service.
	KUBE_POD_GATEWAY=$(cidr_first "$KUBE_POD_CIDR")
	KUBE_SERVICE_IP=$(cidr_first "$KUBE_SERVICE_CIDR")
}

# cidr_first A.B.C.0/N: A.B.C.1.
cidr_first() {
	local net=${1%/*}
	printf '%s.%s' "${net%.*}" "$((${net##*.} + 1))"
}

# check_kubernetes_settings: what check_settings cannot know about.
check_kubernetes_settings() {
	local var
	for var in KUBE_HOST_IP KUBE_NODE_IP; do
		[[ ${!var} =~ ^([0-9]{1,3}\.){3}[0-9]{1,3}$ ]] || die "$var='${!var}' is not an IPv4 address"
	done
	for var in KUBE_POD_CIDR KUBE_SERVICE_CIDR; do
		[[ ${!var} =~ ^([0-9]{1,3}\.){3}0/([0-9]+)$ ]] && ((BASH_REMATCH[2] >= 8 && BASH_REMATCH[2] <= 24)) ||
			die "$var='${!var}': give a network address ending in .0 with a /8../24 prefix"
	done
	[[ $KUBE_NODE_NAME =~ ^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$ ]] || die "KUBE_NODE_NAME='$KUBE_NODE_NAME' is not a valid node name"
	[[ $K8S_NAMESPACE =~ ^[a-z0-9]([a-z0-9-]*[a-z0-9])?$ ]] || die "K8S_NAMESPACE='$K8S_NAMESPACE' is not a valid namespace name"
	[[ $(id -u) -eq 0 ]] || die "the kubernetes service needs root (network and mount namespaces, cgroups)"
}

# ---------------------------------------------------------------- build

# kube_build_paths: where the one multi-call binary lives. It is cached
# outside STACK_DIR (keyed on the Kubernetes and the Go version), so
# unstack --purge and every new stack reuse it.
kube_build_paths() {
	command -v go >/dev/null || export PATH=$PATH:/usr/local/go/bin
	command -v go >/dev/null || die "go not found (expected /usr/local/go/bin/go)"
	local gover
	gover=$(go env GOVERSION) || die "go env GOVERSION failed"
	KUBE_BUILD_DIR=$KUBE_CACHE_DIR/$KUBE_VERSION-$gover
	KUBE_ALL=$KUBE_BUILD_DIR/kube-all
}

# kube_all_main: the hyperkube-style main of kube-all. It runs the component
# its argv[0] names (kube-apiserver, kubelet, ... as a symlink) or the one
# its first argument names (kube-all kubelet --config=...).
kube_all_main() {
	cat <<-'EOF'
		// Command kube-all is every node and control-plane component of
		// Kubernetes in one binary, chosen by argv[0] or by the first argument.
		// Generated by qinling-go's devstack/lib/kubernetes.sh.
		package main

		import (
			"context"
			"fmt"
			"os"
			"path/filepath"
			"sort"

			"github.com/spf13/cobra"
			_ "time/tzdata"

			"k8s.io/component-base/cli"
			_ "k8s.io/component-base/logs/json/register"
			_ "k8s.io/component-base/metrics/prometheus/clientgo"
			_ "k8s.io/component-base/metrics/prometheus/version"
			apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
			controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
			proxy "k8s.io/kubernetes/cmd/kube-proxy/app"
			scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
			kubelet "k8s.io/kubernetes/cmd/kubelet/app"
		)

		var components = map[string]func() *cobra.Command{
			"kube-apiserver":          apiserver.NewAPIServerCommand,
			"kube-controller-manager": controllermanager.NewControllerManagerCommand,
			"kube-proxy":              proxy.NewProxyCommand,
			"kube-scheduler": func() *cobra.Command {
				return scheduler.NewSchedulerCommand()
			},
			"kubelet": func() *cobra.Command {
				return kubelet.NewKubeletCommand(context.Background())
			},
		}

		func main() {
			name, args := filepath.Base(os.Args[0]), os.Args[1:]
			if _, ok := components[name]; !ok && len(args) > 0 {
				name, args = args[0], args[1:]
			}
			newCommand, ok := components[name]
			if !ok {
				names := make([]string, 0, len(components))
				for n := range components {
					names = append(names, n)
				}
				sort.Strings(names)
				fmt.Fprintf(os.Stderr, "usage: kube-all COMPONENT [flags...]\ncomponents: %v\n", names)
				os.Exit(2)
			}
			cmd := newCommand()
			cmd.SetArgs(args)
			os.Exit(cli.Run(cmd))
		}
	EOF
}

# build_kube_all: make $KUBE_ALL unless it is there. A throw-away module
# requires k8s.io/kubernetes and replaces each of its staging modules (which
# its own go.mod points at ./staging/...) with the published v0.x.y; one go
# build compiles every component.
build_kube_all() {
	kube_build_paths
	if [[ -x $KUBE_ALL ]]; then
		log "kubernetes: using cached $KUBE_ALL"
		return 0
	fi
	mkdir -p "$KUBE_BUILD_DIR"
	# Two stacks may build at once: one builds, the other waits for it.
	exec 8>"$KUBE_BUILD_DIR/.lock"
	flock 8
	if [[ -x $KUBE_ALL ]]; then
		exec 8>&-
		log "kubernetes: using $KUBE_ALL (built meanwhile)"
		return 0
	fi
	local src=$KUBE_BUILD_DIR/src buildlog=$KUBE_BUILD_DIR/build.log t0=$SECONDS
	local proxy minor staging ldflags m
	rm -rf "$src"
	mkdir -p "$src/kube-all"
	proxy=$(go env GOPROXY)
	proxy=${proxy%%,*}
	[[ $proxy == http* ]] || proxy=https://proxy.golang.org
	log "kubernetes: building kube-all $KUBE_VERSION with $(go env GOVERSION) (cold: about 9 min on 2 cores; log $buildlog)"
	curl -fsS -m 60 -o "$src/upstream.mod" "$proxy/k8s.io/kubernetes/@v/$KUBE_VERSION.mod" ||
		die "kubernetes: cannot fetch $proxy/k8s.io/kubernetes/@v/$KUBE_VERSION.mod"
	# v1.34.4 -> its staging modules are v0.34.4.
	staging=v0.${KUBE_VERSION#v1.}
	minor=${KUBE_VERSION#v1.}
	minor=${minor%%.*}
	{
		printf 'module qinling-go/kube-all\n\ngo 1.24\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$KUBE_VERSION"
		for m in $(sed -nE 's|^[[:space:]]*(k8s\.io/[a-z0-9-]+)[[:space:]]+=>[[:space:]]+\./staging/.*|\1|p' "$src/upstream.mod" | sort -u); do
			printf '\t%s => %s %s\n' "$m" "$m" "$staging"
		done
		printf ')\n'
	} >"$src/go.mod"
	kube_all_main >"$src/kube-all/main.go"
	ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION"
	ldflags+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
	ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"
	if ! (
		cd "$src" &&
			export GOWORK=off GOFLAGS=-buildvcs=false &&
			go mod tidy &&
			go build -trimpath -ldflags "$ldflags" -o "$KUBE_ALL.new" ./kube-all
	) >"$buildlog" 2>&1; then
		exec 8>&-
		die "kubernetes: building kube-all failed; last lines of $buildlog:
$(tail -n 30 "$buildlog")"
	fi
	mv -f "$KUBE_ALL.new" "$KUBE_ALL"
	exec 8>&-
	log "kubernetes: built $KUBE_ALL ($(du -m "$KUBE_ALL" | cut -f1) MB) in $((SECONDS - t0))s"
	printf '%s built in %ss\n' "$(date -u +%FT%TZ)" "$((SECONDS - t0))" >>"$KUBE_BUILD_DIR/build-times"
}

# kube_bin_links: $BIN_DIR/kube-apiserver ... point at kube-all, so each
# process shows its component's name in ps.
kube_bin_links() {
	local c
	mkdir -p "$BIN_DIR"
	for c in "${KUBE_COMPONENTS[@]}"; do
		[[ $(readlink "$BIN_DIR/$c" 2>/dev/null) == "$KUBE_ALL" ]] || ln -sfn "$KUBE_ALL" "$BIN_DIR/$c"
	done
}

# kube_all_id: what identifies the binary in the daemons' hashes (hashing
# 130 MB on every stack.sh run would cost more than it tells).
kube_all_id() {
	stat -c '%n %s %Y' "$KUBE_ALL"
}

# ---------------------------------------------------------------- PKI

# kube_sign NAME SUBJECT EXT: a key and a CA-signed certificate in pki/.
kube_sign() {
	local name=$1 subj=$2 ext=$3
	(
		cd "$KUBE_PKI" &&
			openssl req -new -newkey rsa:2048 -nodes -keyout "$name.key" -out "$name.csr" -subj "$subj" &&
			printf '%s\n' "$ext" >"$name.ext" &&
			openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial \
				-out "$name.crt" -days 3650 -extfile "$name.ext" &&
			rm -f "$name.csr"
	) >>"$LOG_DIR/kube-pki.log" 2>&1 || die "kubernetes: openssl failed for $name; see $LOG_DIR/kube-pki.log"
	chmod 600 "$KUBE_PKI/$name.key"
}

# kube_pki: the cluster's CA, the API server's serving certificate, its
# client certificate towards the kubelets, the service-account key pair and
# one random token per identity. Made once; the serving certificate again
# when the addresses it must name change.
kube_pki() {
	local sans id
	mkdir -p "$KUBE_PKI"
	chmod 700 "$KUBE_PKI"
	if [[ ! -s $KUBE_PKI/ca.crt || ! -s $KUBE_PKI/ca.key ]]; then
		(cd "$KUBE_PKI" && openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt \
			-days 3650 -subj "/CN=qinling-devstack-kubernetes-ca") >>"$LOG_DIR/kube-pki.log" 2>&1 ||
			die "kubernetes: openssl failed for the CA; see $LOG_DIR/kube-pki.log"
		chmod 600 "$KUBE_PKI/ca.key"
		rm -f "$KUBE_PKI/apiserver.crt" "$KUBE_PKI/apiserver-kubelet-client.crt"
	fi
	sans="IP:127.0.0.1,IP:$KUBE_HOST_IP,IP:$KUBE_SERVICE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default"
	sans+=",DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
	if [[ ! -s $KUBE_PKI/apiserver.crt || $(cat "$KUBE_PKI/apiserver.sans" 2>/dev/null) != "$sans" ]]; then
		kube_sign apiserver /CN=kube-apiserver "subjectAltName=$sans
extendedKeyUsage=serverAuth"
		printf '%s\n' "$sans" >"$KUBE_PKI/apiserver.sans"
	fi
	# What the API server shows the kubelet when it fetches logs.
	[[ -s $KUBE_PKI/apiserver-kubelet-client.crt ]] ||
		kube_sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "extendedKeyUsage=clientAuth"
	if [[ ! -s $KUBE_PKI/sa.key ]]; then
		openssl genrsa -out "$KUBE_PKI/sa.key" 2048 >>"$LOG_DIR/kube-pki.log" 2>&1 &&
			openssl rsa -in "$KUBE_PKI/sa.key" -pubout -out "$KUBE_PKI/sa.pub" >>"$LOG_DIR/kube-pki.log" 2>&1 ||
			die "kubernetes: openssl failed for the service-account key; see $LOG_DIR/kube-pki.log"
		chmod 600 "$KUBE_PKI/sa.key"
	fi
	for id in "${KUBE_IDENTITIES[@]}"; do
		[[ -s $KUBE_PKI/$id.token ]] && continue
		openssl rand -hex 24 | write_file "$KUBE_PKI/$id.token" 0600
	done
	# token,user,uid[,"group,..."]: each component as itself, so the Node
	# authorizer and RBAC see real identities; qinling in no group at all
	# (its rights are the RBAC objects kube_rbac makes).
	write_file "$KUBE_PKI/tokens.csv" 0600 <<-CSV
		$(kube_token admin),admin,admin,system:masters
		$(kube_token kubelet),system:node:$KUBE_NODE_NAME,kubelet,system:nodes
		$(kube_token controller-manager),system:kube-controller-manager,kube-controller-manager
		$(kube_token scheduler),system:kube-scheduler,kube-scheduler
		$(kube_token proxy),system:kube-proxy,kube-proxy
		$(kube_token qinling),qinling,qinling
	CSV
	# curl -H @file: the admin token never shows on a command line.
	printf 'Authorization: Bearer %s\n' "$(kube_token admin)" | write_file "$KUBE_PKI/admin.header" 0600
}

kube_token() { cat "$KUBE_PKI/$1.token"; }

# kube_kubeconfig ID PATH: a kubeconfig with ID's token.
kube_kubeconfig() {
	write_file "$2" 0600 <<-EOF
		# Written by devstack/stack.sh: the $1 identity of the devstack cluster.
		apiVersion: v1
		kind: Config
		clusters:
		- name: qinling-devstack
		  cluster:
		    server: $KUBE_SERVER
		    certificate-authority: $KUBE_PKI/ca.crt
		users:
		- name: $1
		  user:
		    token: $(kube_token "$1")
		contexts:
		- name: $1@qinling-devstack
		  context:
		    cluster: qinling-devstack
		    user: $1
		    namespace: $([[ $1 == qinling || $1 == admin ]] && echo "$K8S_NAMESPACE" || echo default)
		current-context: $1@qinling-devstack
	EOF
}

kube_kubeconfigs() {
	local id
	for id in "${KUBE_IDENTITIES[@]}"; do
		kube_kubeconfig "$id" "$KUBE_DIR/$id.kubeconfig"
	done
}

# ---------------------------------------------------------------- API access

# kube_api METHOD PATH [JSON]: one request as admin; prints the body, then
# the HTTP status on a line of its own.
kube_api() {
	local args=(-sS -m 30 --cacert "$KUBE_PKI/ca.crt" -H "@$KUBE_PKI/admin.header"
		-H 'Accept: application/json' -X "$1" -w '\n%{http_code}\n')
	[[ -n ${3:-} ]] && args+=(-H 'Content-Type: application/json' --data-binary "$3")
	curl "${args[@]}" "$KUBE_SERVER$2"
}

# kube_api_status METHOD PATH [JSON]: only the HTTP status (000: no answer).
kube_api_status() {
	kube_api "$@" 2>/dev/null | tail -n 1
}

# kube_apply COLLECTION_PATH NAME JSON: create the object, or replace it
# when it exists.
kube_apply() {
	local code
	code=$(kube_api_status POST "$1" "$3")
	case $code in
	201) ;;
	409) code=$(kube_api_status PUT "$1/$2" "$3") ;;
	esac
	[[ $code == 200 || $code == 201 ]] || die "kubernetes: creating $1/$2 answered HTTP $code:
$(kube_api POST "$1" "$3" 2>&1 | head -n 5)"
}

kube_apiserver_ready() {
	[[ $(kube_api_status GET /readyz) == 200 ]]
}

kube_node_ready() {
	kube_api GET "/api/v1/nodes/$KUBE_NODE_NAME" 2>/dev/null | tr -d ' \n' | grep -q '"type":"Ready","status":"True"'
}

# ---------------------------------------------------------------- control plane

kube_etcd_args() {
	local client=http://127.0.0.1:$KUBE_ETCD_PORT peer=http://127.0.0.1:$KUBE_ETCD_PEER_PORT
	printf '%s\n' /usr/bin/etcd --name qinling-kubernetes --data-dir "$KUBE_DIR/etcd" \
		--listen-client-urls "$client" --advertise-client-urls "$client" \
		--listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
		--initial-cluster "qinling-kubernetes=$peer" --initial-cluster-state new \
		--initial-cluster-token qinling-kubernetes --logger zap --log-outputs stderr
}

kube_etcd_healthy() {
	curl -sf -m 5 "http://127.0.0.1:$KUBE_ETCD_PORT/health" | grep -q '"health":"true"'
}

start_kube_etcd() {
	local args
	mapfile -t args < <(kube_etcd_args)
	require_port_free kube-etcd "$KUBE_ETCD_PORT" KUBE_ETCD_PORT
	require_port_free kube-etcd "$KUBE_ETCD_PEER_PORT" KUBE_ETCD_PEER_PORT
	start_daemon kube-etcd "${args[@]}"
	wait_until kube-etcd "$SERVICE_TIMEOUT" kube_etcd_healthy
	log "kube-etcd: ready on 127.0.0.1:$KUBE_ETCD_PORT"
}

kube_apiserver_args() {
	local p=$KUBE_PKI
	printf '%s\n' "$BIN_DIR/kube-apiserver" \
		--etcd-servers="http://127.0.0.1:$KUBE_ETCD_PORT" \
		--bind-address="$KUBE_HOST_IP" --advertise-address="$KUBE_HOST_IP" --secure-port="$KUBE_APISERVER_PORT" \
		--tls-cert-file="$p/apiserver.crt" --tls-private-key-file="$p/apiserver.key" --client-ca-file="$p/ca.crt" \
		--kubelet-client-certificate="$p/apiserver-kubelet-client.crt" \
		--kubelet-client-key="$p/apiserver-kubelet-client.key" \
		--kubelet-preferred-address-types=InternalIP,Hostname \
		--service-account-key-file="$p/sa.pub" --service-account-signing-key-file="$p/sa.key" \
		--service-account-issuer=https://kubernetes.default.svc \
		--service-cluster-ip-range="$KUBE_SERVICE_CIDR" --service-node-port-range=30000-32767 \
		--token-auth-file="$p/tokens.csv" \
		--authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
		--allow-privileged=false --profiling=false
}

start_kube_apiserver() {
	local args
	mapfile -t args < <(kube_apiserver_args)
	start_daemon kube-apiserver "${args[@]}"
	wait_until kube-apiserver "$SERVICE_TIMEOUT" kube_apiserver_ready
	log "kube-apiserver: ready at $KUBE_SERVER"
}

kube_controller_manager_args() {
	local kc=$KUBE_DIR/controller-manager.kubeconfig
	# No cloud, no node IPAM (the CNI plugin hands out addresses), no
	# load balancers, routes or volumes.
	printf '%s\n' "$BIN_DIR/kube-controller-manager" --kubeconfig="$kc" \
		--authentication-kubeconfig="$kc" --authorization-kubeconfig="$kc" \
		--bind-address=127.0.0.1 --secure-port="$KUBE_CONTROLLER_MANAGER_PORT" \
		--leader-elect=false --use-service-account-credentials=true \
		--service-account-private-key-file="$KUBE_PKI/sa.key" --root-ca-file="$KUBE_PKI/ca.crt" \
		--cluster-signing-cert-file="$KUBE_PKI/ca.crt" --cluster-signing-key-file="$KUBE_PKI/ca.key" \
		--controllers='*,-nodeipam,-cloud-node-lifecycle,-service,-route,-persistentvolume-binder,-attachdetach' \
		--profiling=false
}

kube_scheduler_args() {
	local kc=$KUBE_DIR/scheduler.kubeconfig
	printf '%s\n' "$BIN_DIR/kube-scheduler" --kubeconfig="$kc" \
		--authentication-kubeconfig="$kc" --authorization-kubeconfig="$kc" \
		--bind-address=127.0.0.1 --secure-port="$KUBE_SCHEDULER_PORT" --leader-elect=false --profiling=false
}

# https_healthy PORT: a component's /healthz on 127.0.0.1 (self-signed).
https_healthy() {
	[[ $(curl -sk -o /dev/null -m 5 -w '%{http_code}' "https://127.0.0.1:$1/healthz") == 200 ]]
}

start_kube_controller_manager() {
	local args
	mapfile -t args < <(kube_controller_manager_args)
	require_port_free kube-controller-manager "$KUBE_CONTROLLER_MANAGER_PORT" KUBE_CONTROLLER_MANAGER_PORT
	start_daemon kube-controller-manager "${args[@]}"
	wait_until kube-controller-manager "$SERVICE_TIMEOUT" https_healthy "$KUBE_CONTROLLER_MANAGER_PORT"
	log "kube-controller-manager: ready"
}

start_kube_scheduler() {
	local args
	mapfile -t args < <(kube_scheduler_args)
	require_port_free kube-scheduler "$KUBE_SCHEDULER_PORT" KUBE_SCHEDULER_PORT
	start_daemon kube-scheduler "${args[@]}"
	wait_until kube-scheduler "$SERVICE_TIMEOUT" https_healthy "$KUBE_SCHEDULER_PORT"
	log "kube-scheduler: ready"
}

# ---------------------------------------------------------------- the node

# The node's namespaces are those of the kube-netns process.
kube_netns_pid() { daemon_pid kube-netns; }

# in_node CMD...: run CMD in the node's network and mount namespaces.
in_node() {
	local ns
	ns=$(kube_netns_pid) || die "kubernetes: the node's namespace holder (kube-netns) is not running"
	nsenter -t "$ns" -m -n "$@"
}

kube_netns_ready() {
	local ns
	ns=$(kube_netns_pid) && [[ $(cat "/proc/$ns/comm" 2>/dev/null) == sleep ]]
}

# kube_holder_script: what kube-netns runs in its fresh namespaces before
# it sleeps. Fresh tmpfs over /run, /var/lib and /var/log keep what
# containerd, its shims, the CNI plugins and the kubelet write at fixed
# paths (/run/containerd/s, /var/lib/cni, /var/lib/kubelet/device-plugins,
# /var/log/containers, util-linux's /run/mount/utab) inside the node, gone
# with it; then the three fake /proc/sys files.
kube_holder_script() {
	local f=$KUBE_DIR/fakesys d
	for d in /run /var/lib /var/log; do
		printf 'mount -t tmpfs -o mode=755,size=64m qinling-node %s && ' "$d"
	done
	printf 'mount --bind %s /proc/sys/%s && ' "$f/overcommit_memory" vm/overcommit_memory \
		"$f/panic" kernel/panic "$f/panic_on_oops" kernel/panic_on_oops
	printf 'exec sleep infinity'
}

# start_kube_netns: the node's namespaces, its end of the veth pair, the
# bridge, forwarding (the node's own sysctl) and the host's two routes.
start_kube_netns() {
	# A new namespace means new everything that runs inside the old one.
	stop_kube_node
	kube_remove_links
	mkdir -p "$KUBE_DIR/fakesys"
	echo 1 >"$KUBE_DIR/fakesys/overcommit_memory"
	echo 10 >"$KUBE_DIR/fakesys/panic"
	echo 1 >"$KUBE_DIR/fakesys/panic_on_oops"
	start_daemon kube-netns unshare --mount --net --propagation private /bin/sh -c "$(kube_holder_script)"
	wait_until kube-netns 10 kube_netns_ready
	local ns
	ns=$(kube_netns_pid)
	{
		ip link add k8sveth0 type veth peer name k8sveth1 &&
			ip addr add "$KUBE_HOST_IP/30" dev k8sveth0 &&
			ip link set k8sveth1 netns "$ns" &&
			ip link set k8sveth0 up &&
			in_node sh -ec "
				ip link set lo up
				ip addr add $KUBE_NODE_IP/30 dev k8sveth1
				ip link set k8sveth1 up
				ip link add k8sbr0 type bridge
				ip addr add $KUBE_POD_GATEWAY/${KUBE_POD_CIDR#*/} dev k8sbr0
				ip link set k8sbr0 up
				echo 1 >/proc/sys/net/ipv4/ip_forward" &&
			ip route replace "$KUBE_POD_CIDR" via "$KUBE_NODE_IP" dev k8sveth0 &&
			ip route replace "$KUBE_SERVICE_CIDR" via "$KUBE_NODE_IP" dev k8sveth0
	} >>"$LOG_DIR/kube-netns.log" 2>&1 || die "kubernetes: setting up the node's network failed; see $LOG_DIR/kube-netns.log"
	log "kube-netns: node namespaces held by PID $ns; $KUBE_HOST_IP (host) <-> $KUBE_NODE_IP (node), pods $KUBE_POD_CIDR"
}

kube_netns_hash() {
	digest "$(kube_holder_script)" "$KUBE_HOST_IP $KUBE_NODE_IP $KUBE_POD_CIDR $KUBE_SERVICE_CIDR"
}

# kube_cni_config: bridge + host-local, no masquerading (the bridge plugin
# then adds no iptables rule), plus loopback.
kube_cni_config() {
	mkdir -p "$KUBE_CNI_DIR/net.d" "$KUBE_CNI_DIR/ipam"
	write_file "$KUBE_CNI_DIR/net.d/10-qinling.conflist" 0644 <<-EOF
		{
		  "cniVersion": "0.4.0",
		  "name": "qinling-pods",
		  "plugins": [
		    {
		      "type": "bridge",
		      "bridge": "k8sbr0",
		      "isGateway": true,
		      "ipMasq": false,
		      "hairpinMode": true,
		      "ipam": {
		        "type": "host-local",
		        "ranges": [[{"subnet": "$KUBE_POD_CIDR", "gateway": "$KUBE_POD_GATEWAY"}]],
		        "routes": [{"dst": "0.0.0.0/0"}],
		        "dataDir": "$KUBE_CNI_DIR/ipam"
		      }
		    },
		    {"type": "loopback"}
		  ]
		}
	EOF
}

# kube_containerd_config: containerd's defaults plus a private root, state,
# socket and runc root; the CRI plugin with the home-made pause image,
# restrict_oom_score_adj (this VM lacks CAP_SYS_RESOURCE: runc could not
# give the sandbox its negative OOM score) and the CNI config above.
kube_containerd_config() {
	local d=$KUBE_CONTAINERD_DIR
	mkdir -p "$d/root" "$d/state" "$d/runc" "$d/opt"
	write_file "$d/config.toml" 0644 <<-EOF
		# Written by devstack/stack.sh: the node's containerd.
		version = 2
		root = "$d/root"
		state = "$d/state"
		disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

		[grpc]
		  address = "$KUBE_CONTAINERD_SOCK"

		[plugins."io.containerd.grpc.v1.cri"]
		  sandbox_image = "$K8S_PAUSE_IMAGE"
		  restrict_oom_score_adj = true
		  netns_mounts_under_state_dir = true
		  stream_server_address = "127.0.0.1"
		  [plugins."io.containerd.grpc.v1.cri".cni]
		    bin_dir = "/usr/lib/cni"
		    conf_dir = "$KUBE_CNI_DIR/net.d"
		  [plugins."io.containerd.grpc.v1.cri".containerd]
		    snapshotter = "overlayfs"
		    default_runtime_name = "runc"
		    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
		      runtime_type = "io.containerd.runc.v2"
		      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
		        Root = "$d/runc"
		        SystemdCgroup = false

		[plugins."io.containerd.internal.v1.opt"]
		  path = "$d/opt"
	EOF
}

kube_ctr() { ctr -a "$KUBE_CONTAINERD_SOCK" -n k8s.io "$@"; }

containerd_ready() { kube_ctr version; }

start_kube_containerd() {
	local ns
	ns=$(kube_netns_pid) || die "kubernetes: kube-netns is not running"
	# IP allocations of a previous run belong to sandboxes that are gone.
	rm -rf "$KUBE_CNI_DIR/ipam"
	mkdir -p "$KUBE_CNI_DIR/ipam"
	start_daemon kube-containerd nsenter -t "$ns" -m -n /usr/bin/containerd --config "$KUBE_CONTAINERD_DIR/config.toml"
	wait_until kube-containerd "$SERVICE_TIMEOUT" containerd_ready
	log "kube-containerd: ready on $KUBE_CONTAINERD_SOCK"
}

kube_kubelet_config() {
	mkdir -p "$KUBE_KUBELET_DIR/root" "$KUBE_KUBELET_DIR/pki" "$KUBE_DIR/pod-logs"
	write_file "$KUBE_KUBELET_DIR/config.yaml" 0644 <<-EOF
		# Written by devstack/stack.sh: the node's kubelet.
		apiVersion: kubelet.config.k8s.io/v1beta1
		kind: KubeletConfiguration
		address: $KUBE_NODE_IP
		port: 10250
		readOnlyPort: 0
		healthzBindAddress: 127.0.0.1
		healthzPort: 10248
		containerRuntimeEndpoint: unix://$KUBE_CONTAINERD_SOCK
		imageServiceEndpoint: unix://$KUBE_CONTAINERD_SOCK
		cgroupDriver: cgroupfs
		failSwapOn: false
		# cgroup v1 (this VM): 1.34 only warns, 1.35 would refuse by default.
		failCgroupV1: false
		# Otherwise the kubelet adds KUBE-FIREWALL chains to the host's tables.
		makeIPTablesUtilChains: false
		# The node's mount namespace shows it the values it wants; never
		# write the machine's.
		protectKernelDefaults: true
		podLogsDir: $KUBE_DIR/pod-logs
		volumePluginDir: $KUBE_KUBELET_DIR/volume-plugins
		authentication:
		  anonymous:
		    enabled: false
		  webhook:
		    enabled: true
		  x509:
		    clientCAFile: $KUBE_PKI/ca.crt
		authorization:
		  mode: Webhook
		clusterDomain: cluster.local
		resolvConf: /etc/resolv.conf
		serializeImagePulls: false
		maxPods: 110
		evictionHard:
		  memory.available: 200Mi
		  nodefs.available: 2%
		  imagefs.available: 2%
		# Our images come from nowhere: never collect them.
		imageGCHighThresholdPercent: 100
		imageGCLowThresholdPercent: 99
	EOF
}

kube_kubelet_args() {
	printf '%s\n' "$BIN_DIR/kubelet" --config="$KUBE_KUBELET_DIR/config.yaml" \
		--kubeconfig="$KUBE_DIR/kubelet.kubeconfig" --root-dir="$KUBE_KUBELET_DIR/root" \
		--cert-dir="$KUBE_KUBELET_DIR/pki" --node-ip="$KUBE_NODE_IP" \
		--hostname-override="$KUBE_NODE_NAME" -v=1
}

kubelet_healthy() { in_node curl -sf -m 5 -o /dev/null http://127.0.0.1:10248/healthz; }

start_kubelet() {
	local ns args
	ns=$(kube_netns_pid) || die "kubernetes: kube-netns is not running"
	mapfile -t args < <(kube_kubelet_args)
	start_daemon kubelet nsenter -t "$ns" -m -n "${args[@]}"
	wait_until kubelet "$SERVICE_TIMEOUT" kubelet_healthy
	log "kubelet: healthy"
}

kube_proxy_args() {
	# --conntrack-*=0: leave the machine-wide conntrack sysctls alone (only
	# the host's namespace may write them anyway).
	printf '%s\n' "$BIN_DIR/kube-proxy" --kubeconfig="$KUBE_DIR/proxy.kubeconfig" \
		--hostname-override="$KUBE_NODE_NAME" --proxy-mode=iptables --cluster-cidr="$KUBE_POD_CIDR" \
		--nodeport-addresses=primary --conntrack-max-per-core=0 \
		--conntrack-tcp-timeout-established=0 --conntrack-tcp-timeout-close-wait=0 \
		--healthz-bind-address=127.0.0.1:10256 --metrics-bind-address=127.0.0.1:10249 -v=1
}

kube_proxy_healthy() { in_node curl -sf -m 5 -o /dev/null http://127.0.0.1:10256/healthz; }

start_kube_proxy() {
	local ns args
	ns=$(kube_netns_pid) || die "kubernetes: kube-netns is not running"
	mapfile -t args < <(kube_proxy_args)
	start_daemon kube-proxy nsenter -t "$ns" -m -n "${args[@]}"
	wait_until kube-proxy "$SERVICE_TIMEOUT" kube_proxy_healthy
	log "kube-proxy: healthy"
}

# kube_isolate_pods: the node's firewall (docs/isolation.md, "Kubernetes"),
# the devstack cluster's enforcement of the qinling-workers NetworkPolicy
# (kube_objects), which the bridge CNI does not enforce. In the node's own
# tables, ahead of kube-proxy's, so the machine's stay untouched: a pod may
# answer, and start nothing. Nothing new from the pod network goes to
# another pod (bridged traffic passes these tables: bridge-nf-call-iptables,
# per network namespace), to the node (the kubelet, NodePorts), to the host
# (the API server on KUBE_HOST_IP, anything else bound there) or to a
# Service; only the host (the engines) opens connections to pods, and only
# to the runtime port. REJECT, so a function's attempt fails at once. Run
# on every stack.sh: the rules go with the namespace.
kube_isolate_pods() {
	in_node sh -ec "
		[ \"\$(cat /proc/sys/net/bridge/bridge-nf-call-iptables)\" = 1 ] || echo 1 >/proc/sys/net/bridge/bridge-nf-call-iptables
		[ \"\$(cat /proc/sys/net/bridge/bridge-nf-call-ip6tables)\" = 1 ] || echo 1 >/proc/sys/net/bridge/bridge-nf-call-ip6tables
		for t in iptables ip6tables; do
			\$t -w -N QINLING-PODS 2>/dev/null || \$t -w -F QINLING-PODS
			for c in INPUT FORWARD; do
				\$t -w -C \$c -j QINLING-PODS 2>/dev/null || \$t -w -I \$c 1 -j QINLING-PODS
			done
			\$t -w -A QINLING-PODS -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN
		done
		iptables -w -A QINLING-PODS -s $KUBE_HOST_IP -d $KUBE_POD_CIDR -p tcp --dport $K8S_RUNTIME_PORT -j RETURN
		iptables -w -A QINLING-PODS -s $KUBE_POD_CIDR -p tcp -j REJECT --reject-with tcp-reset
		iptables -w -A QINLING-PODS -s $KUBE_POD_CIDR -j REJECT --reject-with icmp-admin-prohibited
		iptables -w -A QINLING-PODS -d $KUBE_POD_CIDR -j REJECT --reject-with icmp-admin-prohibited
		ip6tables -w -A QINLING-PODS -i k8sbr0 -j DROP
		ip6tables -w -A QINLING-PODS -o k8sbr0 -j DROP" >>"$LOG_DIR/kube-netns.log" 2>&1 ||
		die "kubernetes: the node's firewall could not be set; see $LOG_DIR/kube-netns.log"
	log "kubernetes: node firewall: pods start no connection; only $KUBE_HOST_IP reaches them, on port $K8S_RUNTIME_PORT"
}

# ---------------------------------------------------------------- objects

# kube_objects: the namespace the engines work in, and the qinling
# identity's rights there: the Role of docs/kubernetes.md (Deployments of
# runtime pools; pods taken by relabelling, deleted, resized in place, one
# per execution of an image function, and their logs), plus reading
# ReplicaSets and events to explain a failure. Nothing cluster-wide, no
# secrets, no exec.
kube_objects() {
	local ns=$K8S_NAMESPACE rw='"get","list","watch","create","update","patch","delete"'
	kube_apply /api/v1/namespaces "$ns" \
		'{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"'"$ns"'","labels":{"app.kubernetes.io/managed-by":"qinling-devstack"}}}'
	kube_apply "/apis/rbac.authorization.k8s.io/v1/namespaces/$ns/roles" qinling-engine '{
		"apiVersion":"rbac.authorization.k8s.io/v1","kind":"Role",
		"metadata":{"name":"qinling-engine","namespace":"'"$ns"'"},
		"rules":[
			{"apiGroups":["apps"],"resources":["deployments"],"verbs":['"$rw"']},
			{"apiGroups":[""],"resources":["pods"],"verbs":['"$rw"']},
			{"apiGroups":[""],"resources":["pods/resize"],"verbs":["patch"]},
			{"apiGroups":[""],"resources":["pods/log"],"verbs":["get"]},
			{"apiGroups":["apps"],"resources":["replicasets"],"verbs":["get","list","watch"]},
			{"apiGroups":[""],"resources":["events"],"verbs":["get","list","watch"]}
		]}'
	kube_apply "/apis/rbac.authorization.k8s.io/v1/namespaces/$ns/rolebindings" qinling-engine '{
		"apiVersion":"rbac.authorization.k8s.io/v1","kind":"RoleBinding",
		"metadata":{"name":"qinling-engine","namespace":"'"$ns"'"},
		"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"Role","name":"qinling-engine"},
		"subjects":[{"apiGroup":"rbac.authorization.k8s.io","kind":"User","name":"qinling"}]}'
	# What the engines' pods may do on the network (docs/isolation.md):
	# enforced here by kube_isolate_pods, on other clusters by the CNI.
	kube_apply "/apis/networking.k8s.io/v1/namespaces/$ns/networkpolicies" qinling-workers '{
		"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy",
		"metadata":{"name":"qinling-workers","namespace":"'"$ns"'"},
		"spec":{
			"podSelector":{"matchLabels":{"app.kubernetes.io/managed-by":"qinling"}},
			"policyTypes":["Ingress","Egress"],
			"ingress":[{"from":[{"ipBlock":{"cidr":"'"$KUBE_HOST_IP"'/32"}}],"ports":[{"protocol":"TCP","port":'"$K8S_RUNTIME_PORT"'}]}],
			"egress":[]
		}}'
	# Earlier devstack versions also let qinling read nodes.
	kube_api_status DELETE /apis/rbac.authorization.k8s.io/v1/clusterrolebindings/qinling-engine-nodes >/dev/null
	kube_api_status DELETE /apis/rbac.authorization.k8s.io/v1/clusterroles/qinling-engine-nodes >/dev/null
}

kube_default_sa_ready() {
	[[ $(kube_api_status GET "/api/v1/namespaces/$K8S_NAMESPACE/serviceaccounts/default") == 200 ]]
}

# ---------------------------------------------------------------- stack

stack_kubernetes() {
	local t0=$SECONDS args h
	kubernetes_paths
	check_kubernetes_settings
	mkdir -p "$KUBE_DIR"
	chmod 700 "$KUBE_DIR"
	kube_check_host
	build_kube_all
	kube_bin_links
	build_k8s_images
	kube_pki
	kube_kubeconfigs
	kube_cni_config
	kube_containerd_config
	kube_kubelet_config

	ensure_daemon kube-netns "$(kube_netns_hash)" start_kube_netns
	h=$(kube_netns_pid)

	mkdir -p "$KUBE_DIR/etcd"
	chmod 700 "$KUBE_DIR/etcd"
	mapfile -t args < <(kube_etcd_args)
	ensure_daemon kube-etcd "$(digest "${args[@]}")" start_kube_etcd
	mapfile -t args < <(kube_apiserver_args)
	ensure_daemon kube-apiserver "$(digest "$h" "$(kube_all_id)" "$KUBE_PKI/tokens.csv" "$KUBE_PKI/apiserver.crt" "${args[@]}")" start_kube_apiserver
	mapfile -t args < <(kube_controller_manager_args)
	ensure_daemon kube-controller-manager "$(digest "$(kube_all_id)" "${args[@]}")" start_kube_controller_manager
	mapfile -t args < <(kube_scheduler_args)
	ensure_daemon kube-scheduler "$(digest "$(kube_all_id)" "${args[@]}")" start_kube_scheduler

	ensure_daemon kube-containerd "$(digest "$h" "$KUBE_CONTAINERD_DIR/config.toml" "$KUBE_CNI_DIR/net.d/10-qinling.conflist" /usr/bin/containerd)" start_kube_containerd
	import_k8s_images
	mapfile -t args < <(kube_kubelet_args)
	ensure_daemon kubelet "$(digest "$h" "$(kube_all_id)" "$KUBE_KUBELET_DIR/config.yaml" "$(daemon_pid kube-containerd)" "${args[@]}")" start_kubelet
	mapfile -t args < <(kube_proxy_args)
	ensure_daemon kube-proxy "$(digest "$h" "$(kube_all_id)" "${args[@]}")" start_kube_proxy

	kube_isolate_pods
	wait_until kubelet "$SERVICE_TIMEOUT" kube_node_ready
	log "kubernetes: node $KUBE_NODE_NAME Ready"
	kube_objects
	wait_until kube-controller-manager "$SERVICE_TIMEOUT" kube_default_sa_ready
	log "kubernetes: namespace $K8S_NAMESPACE and the qinling identity's RBAC in place; cluster ready in $((SECONDS - t0))s"
}

# kube_check_host: one devstack cluster per machine (the link names and
# routes are fixed); a leftover of a crashed run is cleaned up first.
kube_check_host() {
	if ip link show k8sveth0 >/dev/null 2>&1 && ! is_running kube-netns; then
		log "kubernetes: removing k8sveth0 left by an earlier run"
		kube_remove_links
	fi
	if ip link show k8sveth0 >/dev/null 2>&1 && ! is_running kube-netns; then
		die "kubernetes: link k8sveth0 exists and is not this stack's (another devstack cluster on this machine?)"
	fi
}

# ---------------------------------------------------------------- unstack

# kube_delete_workloads: what the engines (or tests) left in the namespace,
# through the API while it still runs, so that nothing comes back with the
# next stack.sh: Deployments and ReplicaSets (orphaning their pods, which
# then go at once, without grace: their containers are killed right after
# anyway) and Services.
kube_delete_workloads() {
	kube_apiserver_ready || return 0
	local ns=/namespaces/$K8S_NAMESPACE
	local orphan='{"kind":"DeleteOptions","apiVersion":"v1","propagationPolicy":"Orphan"}'
	kube_api_status DELETE "/apis/apps/v1$ns/deployments" "$orphan" >/dev/null
	kube_api_status DELETE "/apis/apps/v1$ns/replicasets" "$orphan" >/dev/null
	kube_api_status DELETE "/api/v1$ns/services" >/dev/null
	kube_api_status DELETE "/api/v1$ns/pods" '{"kind":"DeleteOptions","apiVersion":"v1","gracePeriodSeconds":0}' >/dev/null
	local deadline=$((SECONDS + 10))
	while ((SECONDS < deadline)); do
		kube_api GET "/api/v1$ns/pods?limit=1" 2>/dev/null | tr -d ' \n' | grep -q '"items":\[\]' && return 0
		sleep 0.2
	done
	log "kubernetes: pods of $K8S_NAMESPACE still listed after 10s; killing their containers anyway"
}

# kube_kill_containers: every task containerd still runs, then their
# containers (both are gone after a clean kube_delete_workloads).
kube_kill_containers() {
	is_running kube-containerd || return 0
	local ids id
	ids=$(kube_ctr tasks ls -q 2>/dev/null) || true
	for id in $ids; do
		kube_ctr tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
	done
	for id in $ids; do
		kube_ctr tasks delete -f "$id" >/dev/null 2>&1 || true
	done
	ids=$(kube_ctr containers ls -q 2>/dev/null) || true
	for id in $ids; do
		kube_ctr containers delete "$id" >/dev/null 2>&1 || true
	done
}

# our_shims: PIDs of containerd-shim processes of this stack's containerd
# (their command line names its socket).
our_shims() {
	local pid cmd
	for pid in $(pgrep -x containerd-shim); do
		cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || continue
		if [[ "$cmd " == *" -address $KUBE_CONTAINERD_SOCK "* ]]; then
			printf '%s\n' "$pid"
		fi
	done
	return 0
}

# kube_kill_cgroups: any process still in a kubepods cgroup (a container
# whose shim was killed), then the cgroup trees themselves, leaf first, in
# every hierarchy. The kubelet does not remove them when it stops.
kube_kill_cgroups() {
	local pids tries
	for tries in 1 2 3 4 5 6 7 8 9 10; do
		pids=$(cat /sys/fs/cgroup/*/kubepods/cgroup.procs /sys/fs/cgroup/*/kubepods/*/cgroup.procs \
			/sys/fs/cgroup/*/kubepods/*/*/cgroup.procs /sys/fs/cgroup/*/kubepods/*/*/*/cgroup.procs 2>/dev/null | sort -u) || true
		[[ -z $pids ]] && break
		# shellcheck disable=SC2086
		kill -KILL $pids 2>/dev/null || true
		sleep 0.1
	done
	local root
	for root in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
		[[ -d $root ]] || continue
		find "$root" -depth -type d -exec rmdir {} + 2>/dev/null ||
			find "$root" -depth -type d -exec rmdir {} \; 2>/dev/null || true
		[[ -d $root ]] && log "kubernetes: could not remove $root"
	done
	return 0
}

# kube_remove_links: the host's end of the veth pair (k8sbr0 and k8sveth1
# live and die with the node's network namespace) and the two routes.
kube_remove_links() {
	ip route del "$KUBE_POD_CIDR" via "$KUBE_NODE_IP" dev k8sveth0 2>/dev/null || true
	ip route del "$KUBE_SERVICE_CIDR" via "$KUBE_NODE_IP" dev k8sveth0 2>/dev/null || true
	ip link del k8sveth0 2>/dev/null || true
	ip link del k8sbr0 2>/dev/null || true
}

# stop_in_parallel TIMEOUT NAME...: stop_daemon each at once and wait for
# all (only for those: stack.sh's own daemons are background jobs too).
stop_in_parallel() {
	local timeout=$1 name pids=()
	shift
	for name in "$@"; do
		stop_daemon "$name" "$timeout" &
		pids+=("$!")
	done
	wait "${pids[@]}"
}

# stop_kube_node: the pods, kube-proxy and the kubelet, every container,
# containerd and its shims.
stop_kube_node() {
	kube_delete_workloads
	stop_in_parallel 30 kube-proxy kubelet
	kube_kill_containers
	local shims=()
	mapfile -t shims < <(our_shims)
	stop_daemon kube-containerd 30
	mapfile -t -O "${#shims[@]}" shims < <(our_shims)
	if ((${#shims[@]})); then
		kill -KILL "${shims[@]}" 2>/dev/null || true
	fi
	kube_kill_cgroups
}

# unstack_kubernetes: everything stack_kubernetes started, the node first,
# then the control plane; then what the kernel keeps after them.
unstack_kubernetes() {
	local t0=$SECONDS
	kubernetes_paths
	stop_kube_node
	# The API server last of the three, once its clients' watches are gone:
	# it drains open requests for up to a minute when told to stop. It
	# keeps no state: past 5 s it is killed.
	stop_in_parallel 30 kube-scheduler kube-controller-manager
	stop_in_parallel 5 kube-apiserver
	stop_in_parallel 30 kube-etcd kube-netns
	kube_remove_links
	kube_kill_cgroups
	log "kubernetes: stopped and cleaned up in $((SECONDS - t0))s"
}

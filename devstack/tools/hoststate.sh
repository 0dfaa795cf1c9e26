#!/usr/bin/env bash
# devstack/tools/hoststate.sh: print a canonical snapshot of the machine
# state the devstack Kubernetes cluster (devstack/lib/kubernetes.sh) could
# leave behind: firewall rules, the sysctls the kubelet and kube-proxy care
# about, routes, links, network namespaces, mounts, kubepods cgroups, the
# files outside STACK_DIR that Kubernetes components like to create, and
# leftover processes of the cluster. Two snapshots, before stack.sh and
# after unstack.sh, must be identical (./tox -e k8s diffs them).
#
#   devstack/tools/hoststate.sh > before.txt
#
# Counters, timestamps and PIDs are left out so that only real changes
# show. Read-only: it changes nothing (and loads no firewall module).
set -uo pipefail
export LC_ALL=C

section() { printf '\n## %s\n' "$1"; }

# rules CMD...: a *-save dump without comments (timestamps) and counters.
rules() {
	"$@" 2>&1 | grep -v '^#' | sed -E 's/\[[0-9]+:[0-9]+\]/[-]/g'
}

for cmd in iptables-save iptables-legacy-save ip6tables-save ip6tables-legacy-save; do
	command -v "$cmd" >/dev/null || continue
	section "$cmd"
	rules "$cmd"
done
if command -v nft >/dev/null; then
	section "nft list ruleset"
	nft list ruleset 2>&1 | sed -E 's/counter packets [0-9]+ bytes [0-9]+/counter/g'
fi

section sysctls
for key in vm.overcommit_memory kernel.panic kernel.panic_on_oops net.ipv4.ip_forward \
	net.ipv4.conf.all.route_localnet net.ipv4.conf.all.forwarding net.ipv6.conf.all.forwarding \
	net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables \
	net.netfilter.nf_conntrack_max net.netfilter.nf_conntrack_tcp_timeout_established \
	net.netfilter.nf_conntrack_tcp_timeout_close_wait kernel.keys.root_maxkeys kernel.keys.root_maxbytes; do
	f=/proc/sys/${key//.//}
	[[ -r $f ]] && printf '%s = %s\n' "$key" "$(cat "$f")"
done

section "routes (IPv4, every table)"
ip -4 route show table all 2>&1
section "routes (IPv6, every table)"
ip -6 route show table all 2>&1 | sed -E 's/ expires [0-9]+sec//'
section "rules"
ip rule show 2>&1
section "links"
ip -o link show 2>&1 | awk -F': ' '{sub(/@.*/, "", $2); print $2}' | sort
section "addresses"
ip -o addr show 2>&1 | awk '{print $2, $3, $4}' | sort
section "network namespaces"
ip netns list 2>&1
ls -A /run/netns /var/run/netns 2>/dev/null

section mounts
findmnt -rn -o TARGET,FSTYPE | sort

section "kubepods cgroups"
ls -d /sys/fs/cgroup/*/kubepods* /sys/fs/cgroup/kubepods* 2>/dev/null

section "files outside STACK_DIR"
for path in /run/containerd /run/containerd/s /run/containerd/runc /var/run/containerd /var/lib/containerd \
	/etc/containerd /var/lib/kubelet /var/log/pods /var/log/containers /etc/kubernetes /var/lib/cni \
	/etc/cni /opt/cni /usr/libexec/kubernetes /run/flannel /var/lib/calico /run/calico /root/.kube /tmp/kube-proxy; do
	[[ -e $path || -L $path ]] || continue
	if [[ -d $path ]]; then
		printf '%s/ (%s entries)\n' "$path" "$(find "$path" -mindepth 1 2>/dev/null | wc -l)"
	else
		printf '%s\n' "$path"
	fi
done

section "cluster processes"
# Kubernetes components, any containerd and its shims, the pause process,
# and the cluster's own etcd; no PIDs, no zombies (exited, their parent
# has not reaped them yet).
ps -eo stat=,comm=,args= | awk '
	$1 ~ /^Z/ || $2 == "awk" { next }
	{ $1 = "" }
	$2 ~ /^(kube-apiserver|kube-controller|kube-scheduler|kubelet|kube-proxy|kube-all|containerd|containerd-shim.*|pause)$/ ||
	/etcd .*qinling-kubernetes/ { print }' | sort
section "network namespaces holding k8sveth1 or k8sbr0, and their processes"
# A leftover node namespace of the devstack cluster (unnamed: only its
# processes keep it).
declare -A seen=()
self_ns=$(readlink /proc/self/ns/net)
for d in /proc/[0-9]*; do
	ns=$(readlink "$d/ns/net" 2>/dev/null) || continue
	[[ $ns == "$self_ns" || -n ${seen[$ns]:-} ]] && continue
	seen[$ns]=1
	nsenter -t "${d#/proc/}" -n ip -o link show 2>/dev/null | grep -qE ': (k8sveth1|k8sbr0)[:@]' || continue
	for p in /proc/[0-9]*; do
		[[ $(readlink "$p/ns/net" 2>/dev/null) == "$ns" ]] && cat "$p/comm" 2>/dev/null
	done | sort | tr '\n' ' '
	echo
done
exit 0

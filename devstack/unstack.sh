#!/usr/bin/env bash
# devstack/unstack.sh: stop exactly the daemons devstack/stack.sh started,
# by the PIDs it recorded in STACK_DIR/pids (Prometheus, the engines and
# qinling-api first, then the Kubernetes cluster if there is one, MariaDB last;
# RabbitMQ's own epmd too), waiting for each to exit.
# Data, configs and logs stay unless --purge is given, which then deletes
# STACK_DIR entirely.
#
#   devstack/unstack.sh [--purge]
#
# STACK_DIR comes from the environment or devstack/settings' default; the
# rest from the STACK_DIR/stack.env that stack.sh wrote.
set -euo pipefail

DEVSTACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=devstack/settings
source "$DEVSTACK_DIR/settings"
# shellcheck source=devstack/lib/common.sh
source "$DEVSTACK_DIR/lib/common.sh"
# shellcheck source=devstack/lib/kubernetes.sh
source "$DEVSTACK_DIR/lib/kubernetes.sh"

purge=0
for arg in "$@"; do
	case $arg in
	--purge) purge=1 ;;
	-h | --help)
		sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
		exit 0
		;;
	*) die "unknown argument: $arg (usage: unstack.sh [--purge])" ;;
	esac
done

stack_paths
if [[ ! -d $STACK_DIR ]]; then
	log "nothing to do: $STACK_DIR does not exist"
	exit 0
fi
[[ -e $STACK_DIR/.qinling-stack ]] || die "$STACK_DIR was not made by devstack/stack.sh; not touching it"
# shellcheck source=/dev/null
[[ -r $STACK_ENV ]] && source "$STACK_ENV"
stack_paths

exec 9>"$STACK_DIR/.lock"
flock -w 120 9 || die "another stack.sh, unstack.sh or restart.sh is working on $STACK_DIR"

if [[ -d $PID_DIR ]]; then
	# The dashboard and Prometheus first (they call or scrape the rest), the
	# engines (any number an earlier run left), then the API, then the
	# services they use; the broker before its epmd.
	stop_daemon horizon 30
	stop_daemon prometheus 30
	for f in "$PID_DIR"/engine-*.pid; do
		[[ -e $f ]] && stop_daemon "$(basename "$f" .pid)" 30
	done
	stop_daemon qinling-api 30
	# The cluster (lib/kubernetes.sh): its pods, node and control plane,
	# then the links, routes and cgroups the kernel keeps after them.
	if [[ -d $STACK_DIR/kubernetes ]]; then
		unstack_kubernetes
	fi
	stop_daemon keystone 30
	stop_daemon etcd 30
	stop_daemon rabbitmq 60
	stop_daemon epmd 10
	stop_daemon mariadb 60
	for f in "$PID_DIR"/*.pid; do
		[[ -e $f ]] || continue
		stop_daemon "$(basename "$f" .pid)" 30
	done
fi
log "all stopped"

if ((purge)); then
	exec 9>&-
	rm -rf -- "$STACK_DIR"
	log "purged $STACK_DIR"
fi

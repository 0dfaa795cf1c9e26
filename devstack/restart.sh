#!/usr/bin/env bash
# devstack/restart.sh: restart one daemon of the stack that devstack/stack.sh
# started, by its recorded PID, and wait until it is ready again. For tests
# that need a service to go away and come back.
#
#   devstack/restart.sh SERVICE [--down SECONDS]
#
# SERVICE: mariadb, rabbitmq, etcd, keystone, qinling-api (or api), engine-N,
# swift-proxy (devstack/stop.sh stops one without starting it again).
# --down keeps it stopped that long before starting it again (e.g. to hold a
# broker outage open while a test probes the API). Exit status 0 means the
# service is back and ready.
set -euo pipefail

DEVSTACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=devstack/settings
source "$DEVSTACK_DIR/settings"
# shellcheck source=devstack/lib/common.sh
source "$DEVSTACK_DIR/lib/common.sh"
for lib in mariadb rabbitmq etcd keystone swift qinling; do
	# shellcheck source=/dev/null
	source "$DEVSTACK_DIR/lib/$lib.sh"
done

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; }

service='' down=0
while (($#)); do
	case $1 in
	--down)
		[[ ${2:-} =~ ^[0-9]+$ ]] || die "--down needs a number of seconds"
		down=$2
		shift 2
		;;
	-h | --help) usage; exit 0 ;;
	-*) die "unknown option $1" ;;
	*)
		[[ -z $service ]] || die "one service at a time"
		service=$1
		shift
		;;
	esac
done
[[ -n $service ]] || { usage >&2; exit 2; }
[[ $service == api ]] && service=qinling-api

stack_paths
[[ -r $STACK_ENV ]] || die "$STACK_ENV missing: run devstack/stack.sh first"
# shellcheck source=/dev/null
source "$STACK_ENV"
stack_paths
mariadb_paths
keystone_paths
qinling_paths

exec 9>"$STACK_DIR/.lock"
flock -w 120 9 || die "another stack.sh, unstack.sh or restart.sh is working on $STACK_DIR"

pause() {
	if ((down > 0)); then
		log "$service: staying down for ${down}s"
		sleep "$down"
	fi
}

case $service in
rabbitmq) restart_rabbitmq "$down" ;;
qinling-api | engine-[0-9]*)
	stop_daemon "$service"
	pause
	restart_qinling "$service"
	;;
swift-proxy)
	stop_daemon swift-proxy
	pause
	resume_swift_proxy
	;;
mariadb | etcd | keystone)
	stop_daemon "$service" 60
	pause
	"stack_$service"
	;;
*) die "unknown service '$service' (mariadb, rabbitmq, etcd, keystone, qinling-api, engine-N, swift-proxy)" ;;
esac
log "$service: restarted"

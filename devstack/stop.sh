#!/usr/bin/env bash
# devstack/stop.sh: stop one daemon of the stack that devstack/stack.sh
# started, by its recorded PID (its children too: Swift's servers fork their
# workers), and leave it stopped. For tests that hold an outage open while
# they probe the rest; devstack/restart.sh SERVICE starts it again.
#
#   devstack/stop.sh SERVICE      e.g. swift-proxy, engine-2
set -euo pipefail

DEVSTACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=devstack/settings
source "$DEVSTACK_DIR/settings"
# shellcheck source=devstack/lib/common.sh
source "$DEVSTACK_DIR/lib/common.sh"

[[ $# -eq 1 && $1 != -* ]] || { sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
service=$1

stack_paths
[[ -r $STACK_ENV ]] || die "$STACK_ENV missing: run devstack/stack.sh first"
# shellcheck source=/dev/null
source "$STACK_ENV"
stack_paths
[[ -e $(pidfile "$service") ]] || die "$service: no PID file in $PID_DIR (not a daemon of this stack, or stopped)"

exec 9>"$STACK_DIR/.lock"
flock -w 120 9 || die "another stack.sh, unstack.sh or restart.sh is working on $STACK_DIR"
stop_daemon "$service" 60

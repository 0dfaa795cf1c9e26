# shellcheck shell=bash
# devstack/lib/common.sh: helpers every service library uses. Sourced, never
# executed.
#
# Daemons are started detached (own session) with their output appended to
# $STACK_DIR/logs/NAME.log. $STACK_DIR/pids/NAME.pid holds "PID STARTTIME",
# the kernel's start time of that process, so a recycled PID is never taken
# for ours; $STACK_DIR/pids/NAME.hash holds a digest of what the daemon was
# started with (binary, config, arguments), so a second stack.sh run leaves
# an unchanged daemon alone and restarts a changed one.

STACK_T0=${STACK_T0:-$SECONDS}

log() { printf 'stack [%3ds] %s\n' "$((SECONDS - STACK_T0))" "$*" >&2; }
die() {
	printf 'stack: ERROR: %s\n' "$*" >&2
	exit 1
}

# stack_paths: the directory layout under $STACK_DIR.
stack_paths() {
	BIN_DIR=$STACK_DIR/bin
	ETC_DIR=$STACK_DIR/etc
	DATA_DIR=$STACK_DIR/data
	RUN_DIR=$STACK_DIR/run
	LOG_DIR=$STACK_DIR/logs
	PID_DIR=$STACK_DIR/pids
	STACK_ENV=$STACK_DIR/stack.env
}

# check_settings: refuse values that would break the files stack.sh writes
# (stack.env is sourced by bash and read by the Go tests as KEY=VALUE).
check_settings() {
	local var
	for var in STACK_DIR SERVICE_HOST ADMIN_PASSWORD DEMO_PASSWORD ALT_DEMO_PASSWORD \
		SERVICE_PASSWORD DATABASE_PASSWORD RABBIT_USER RABBIT_PASSWORD REGION_NAME; do
		[[ ${!var} =~ ^[A-Za-z0-9_./:@+,=-]+$ ]] ||
			die "$var='${!var}': use only letters, digits and _./:@+,=-"
	done
	for var in QINLING_API_PORT KEYSTONE_PORT MYSQL_PORT RABBIT_PORT RABBIT_DIST_PORT \
		RABBIT_EPMD_PORT ETCD_PORT ETCD_PEER_PORT HORIZON_PORT HORIZON_PROCESSES QINLING_ENGINES QINLING_POOL_SIZE \
		QINLING_MAX_PACKAGE_SIZE KEYSTONE_PROCESSES KEYSTONE_THREADS KEYSTONE_TOKEN_EXPIRATION SERVICE_TIMEOUT \
		KUBE_ETCD_PORT KUBE_ETCD_PEER_PORT KUBE_APISERVER_PORT KUBE_CONTROLLER_MANAGER_PORT KUBE_SCHEDULER_PORT \
		SWIFT_PORT SWIFT_ACCOUNT_PORT SWIFT_CONTAINER_PORT SWIFT_OBJECT_PORT MEMCACHED_PORT \
		QINLING_ENGINE_METRICS_PORT PROMETHEUS_PORT; do
		[[ ${!var} =~ ^[0-9]+$ ]] || die "$var='${!var}' is not a number"
	done
	[[ -z $QINLING_GOMAXPROCS || $QINLING_GOMAXPROCS =~ ^[1-9][0-9]*$ ]] ||
		die "QINLING_GOMAXPROCS='$QINLING_GOMAXPROCS' is not a number of threads"
	[[ -z $QINLING_FUNCTION_EXPIRATION || $QINLING_FUNCTION_EXPIRATION =~ ^[1-9][0-9]*$ ]] ||
		die "QINLING_FUNCTION_EXPIRATION='$QINLING_FUNCTION_EXPIRATION' is not a number of seconds"
	[[ $SERVICE_HOST == 127.0.0.1 ]] || die "SERVICE_HOST=$SERVICE_HOST: only 127.0.0.1 is supported"
	[[ $STACK_DIR == /* && $STACK_DIR != / ]] || die "STACK_DIR=$STACK_DIR must be an absolute path other than /"
	# Worker sockets live under the engines' state directories: keep
	# the 108-byte unix socket limit in reach.
	((${#STACK_DIR} <= 48)) || die "STACK_DIR=$STACK_DIR is too long (unix socket paths); keep it under 48 characters"
	((QINLING_ENGINES >= 1)) || die "QINLING_ENGINES must be at least 1"
	local ports=("$QINLING_API_PORT" "$KEYSTONE_PORT" "$MYSQL_PORT" "$RABBIT_PORT" "$RABBIT_DIST_PORT"
		"$RABBIT_EPMD_PORT" "$ETCD_PORT" "$ETCD_PEER_PORT" "$PROMETHEUS_PORT")
	service_enabled horizon && ports+=("$HORIZON_PORT")
	local i
	for ((i = 0; i < QINLING_ENGINES; i++)); do
		ports+=("$((QINLING_ENGINE_METRICS_PORT + i))")
	done
	# The cluster's loopback ports (its API server listens on KUBE_HOST_IP).
	service_enabled kubernetes && ports+=("$KUBE_ETCD_PORT" "$KUBE_ETCD_PEER_PORT" \
		"$KUBE_CONTROLLER_MANAGER_PORT" "$KUBE_SCHEDULER_PORT")
	service_enabled swift && ports+=("$SWIFT_PORT" "$SWIFT_ACCOUNT_PORT" "$SWIFT_CONTAINER_PORT" \
		"$SWIFT_OBJECT_PORT" "$MEMCACHED_PORT")
	local dup
	dup=$(printf '%s\n' "${ports[@]}" | sort | uniq -d)
	[[ -z $dup ]] || die "port $dup is given to two services in devstack/settings"
}

service_enabled() { [[ " $ENABLED_SERVICES " == *" $1 "* ]]; }

# ---------------------------------------------------------------- processes

pidfile() { printf '%s/%s.pid' "$PID_DIR" "$1"; }

# proc_starttime PID: field 22 of /proc/PID/stat (after the parenthesised
# command name, which may hold spaces).
proc_starttime() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	# shellcheck disable=SC2086
	set -- $stat
	# $1 is the state (field 3): field 22 is the 20th after the name.
	[[ $1 != Z ]] || return 1
	printf '%s' "${20}"
}

# pid_alive PID STARTTIME: that very process still runs (and is no zombie).
pid_alive() {
	local st
	st=$(proc_starttime "$1") || return 1
	[[ $st == "$2" ]]
}

# daemon_pid NAME: print the PID of our running daemon NAME, or fail.
daemon_pid() {
	local f pid start
	f=$(pidfile "$1")
	[[ -r $f ]] || return 1
	read -r pid start <"$f" || return 1
	[[ -n $pid && -n $start ]] || return 1
	pid_alive "$pid" "$start" || return 1
	printf '%s' "$pid"
}

is_running() { daemon_pid "$1" >/dev/null; }

# port_open PORT: something accepts TCP connections on SERVICE_HOST:PORT.
port_open() { (exec 3<>"/dev/tcp/$SERVICE_HOST/$1") 2>/dev/null; }

# require_port_free NAME PORT: fail clearly when another program holds a port
# a daemon of ours is about to listen on.
require_port_free() {
	if port_open "$2"; then
		die "$1: port $2 on $SERVICE_HOST is already in use by another program; pick another port in devstack/settings (${3:-see the *_PORT settings})"
	fi
}

# start_daemon NAME CMD...: start CMD detached, output appended to
# logs/NAME.log, and record it in pids/NAME.pid.
start_daemon() {
	local name=$1 pid start
	shift
	mkdir -p "$LOG_DIR" "$PID_DIR"
	printf '=== %s: stack.sh starts: %s\n' "$(date -u +%FT%TZ)" "$*" >>"$LOG_DIR/$name.log"
	# Without job control the child is no process group leader, so setsid
	# makes a new session in place and execs: $! is the daemon itself.
	# fd 9 is the lock on $STACK_DIR/.lock: daemons must not keep it.
	setsid "$@" >>"$LOG_DIR/$name.log" 2>&1 </dev/null 9>&- &
	pid=$!
	start=$(proc_starttime "$pid") || die "$name exited at once; see $LOG_DIR/$name.log:
$(tail -n 30 "$LOG_DIR/$name.log")"
	printf '%s %s\n' "$pid" "$start" >"$(pidfile "$name")"
	log "$name: started, PID $pid (log $LOG_DIR/$name.log)"
}

# adopt_pid NAME PID: from now on NAME is process PID (a daemon whose
# launcher forks the real server and stays around as its parent).
adopt_pid() {
	local start
	start=$(proc_starttime "$2") || die "$1: process $2 is not running"
	printf '%s %s\n' "$2" "$start" >"$(pidfile "$1")"
}

# descendants PID: the PIDs of PID's children, their children, and so on.
descendants() {
	local out=() queue=("$1") p kid
	while ((${#queue[@]})); do
		p=${queue[0]}
		queue=("${queue[@]:1}")
		for kid in $(cat /proc/"$p"/task/*/children 2>/dev/null); do
			out+=("$kid")
			queue+=("$kid")
		done
	done
	printf '%s\n' "${out[@]}"
}

# stop_daemon NAME [TIMEOUT] [SIGNAL]: stop our daemon NAME by PID: SIGNAL
# (TERM by default), wait up to TIMEOUT seconds, then SIGKILL it and its
# process group; descendants still alive afterwards are killed too. No-op
# when it does not run.
stop_daemon() {
	local name=$1 timeout=${2:-30} sig=${3:-TERM} f pid start kids=() k deadline
	f=$(pidfile "$name")
	if ! pid=$(daemon_pid "$name"); then
		rm -f "$f" "$PID_DIR/$name.hash"
		return 0
	fi
	read -r _ start <"$f"
	mapfile -t kids < <(descendants "$pid")
	kill -s "$sig" "$pid" 2>/dev/null || true
	deadline=$((SECONDS + timeout))
	while pid_alive "$pid" "$start" && ((SECONDS < deadline)); do
		sleep 0.2
	done
	if pid_alive "$pid" "$start"; then
		log "$name: still running ${timeout}s after SIG$sig; SIGKILL"
		kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
		while pid_alive "$pid" "$start"; do sleep 0.1; done
	fi
	for k in "${kids[@]}"; do
		[[ -n $k && -d /proc/$k ]] && kill -KILL "$k" 2>/dev/null || true
	done
	rm -f "$f" "$PID_DIR/$name.hash"
	log "$name: stopped (PID $pid)"
}

# wait_until NAME TIMEOUT CMD...: run CMD every half second until it succeeds;
# fail with the daemon's log tail when NAME stops running or time is up.
wait_until() {
	local name=$1 timeout=$2 deadline
	shift 2
	deadline=$((SECONDS + timeout))
	until "$@" >/dev/null 2>&1; do
		if ! is_running "$name"; then
			die "$name exited during startup; last lines of $LOG_DIR/$name.log:
$(tail -n 40 "$LOG_DIR/$name.log" 2>/dev/null)"
		fi
		if ((SECONDS >= deadline)); then
			die "$name not ready after ${timeout}s ($*); last lines of $LOG_DIR/$name.log:
$(tail -n 40 "$LOG_DIR/$name.log" 2>/dev/null)"
		fi
		sleep 0.5
	done
}

# http_ok URL: GET URL answers 200.
http_ok() {
	[[ $(curl -s -o /dev/null -m 5 -w '%{http_code}' "$1") == 200 ]]
}

# digest FILE_OR_STRING...: one sha256 of files' contents and literal strings.
digest() {
	local a
	for a in "$@"; do
		if [[ -f $a ]]; then
			sha256sum <"$a"
		else
			printf '%s\n' "$a"
		fi
	done | sha256sum | cut -d' ' -f1
}

# ensure_daemon NAME HASH START_FN: leave NAME alone when it runs with the
# same HASH; restart it when it runs with another; start it otherwise.
# START_FN starts it and waits until it is ready.
ensure_daemon() {
	local name=$1 hash=$2 start_fn=$3 old=
	[[ -r $PID_DIR/$name.hash ]] && old=$(<"$PID_DIR/$name.hash")
	if is_running "$name"; then
		if [[ $old == "$hash" ]]; then
			log "$name: already running (PID $(daemon_pid "$name")), unchanged"
			return 0
		fi
		log "$name: its configuration or binary changed; restarting"
		stop_daemon "$name"
	fi
	"$start_fn"
	printf '%s\n' "$hash" >"$PID_DIR/$name.hash"
}

# write_file PATH MODE: write stdin to PATH atomically, only when it differs
# (so unchanged files keep their mtime).
write_file() {
	local path=$1 mode=$2 tmp
	mkdir -p "$(dirname "$path")"
	tmp=$(mktemp "$path.XXXXXX")
	cat >"$tmp"
	chmod "$mode" "$tmp"
	if [[ -f $path ]] && cmp -s "$tmp" "$path"; then
		rm -f "$tmp"
	else
		mv -f "$tmp" "$path"
	fi
}

# ---------------------------------------------------------------- packages

# install_packages PKG...: apt-get install those not installed yet. Package
# scripts must not start the system's own daemons (we run private ones), so a
# policy-rc.d that forbids it is put in place for the install when the
# machine has none.
install_packages() {
	local p missing=() policy=/usr/sbin/policy-rc.d made_policy=0
	for p in "$@"; do
		dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
	done
	((${#missing[@]})) || return 0
	if [[ $STACK_INSTALL_PACKAGES != 1 || $(id -u) -ne 0 ]]; then
		die "missing Debian packages: ${missing[*]} (as root: apt-get install ${missing[*]})"
	fi
	log "installing ${missing[*]}"
	if [[ ! -e $policy ]]; then
		printf '#!/bin/sh\n# devstack/stack.sh: no daemon starts during its apt-get install\nexit 101\n' >"$policy"
		chmod 755 "$policy"
		made_policy=1
	fi
	local rc=0
	{
		DEBIAN_FRONTEND=noninteractive apt-get update -q >"$LOG_DIR/apt.log" 2>&1 &&
			DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$LOG_DIR/apt.log" 2>&1
	} || rc=$?
	((made_policy)) && rm -f "$policy"
	((rc == 0)) || die "apt-get install ${missing[*]} failed; see $LOG_DIR/apt.log:
$(tail -n 20 "$LOG_DIR/apt.log")"
	log "installed ${missing[*]}"
}

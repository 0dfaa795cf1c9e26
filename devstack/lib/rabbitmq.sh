# shellcheck shell=bash
# devstack/lib/rabbitmq.sh: a private RabbitMQ node: its own node name,
# cookie, data, logs and config under $STACK_DIR, AMQP and Erlang
# distribution on loopback ports, and its own epmd on RABBIT_EPMD_PORT, which
# stack.sh starts (and unstack.sh stops) by PID, so no stray epmd is left.

RABBITMQ_PACKAGES=(rabbitmq-server)
RABBIT_BIN=/usr/lib/rabbitmq/bin
RABBIT_NODENAME=qinling-stack@localhost

# rabbit_env: the environment of the node and of rabbitmqctl talking to it.
rabbit_env() {
	export HOME=$DATA_DIR/rabbitmq # .erlang.cookie lives here
	export RABBITMQ_NODENAME=$RABBIT_NODENAME
	export RABBITMQ_CONF_ENV_FILE=$ETC_DIR/rabbitmq/rabbitmq-env.conf
	export RABBITMQ_CONFIG_FILE=$ETC_DIR/rabbitmq/rabbitmq.conf
	export RABBITMQ_ADVANCED_CONFIG_FILE=$ETC_DIR/rabbitmq/advanced.config
	export RABBITMQ_ENABLED_PLUGINS_FILE=$ETC_DIR/rabbitmq/enabled_plugins
	export RABBITMQ_MNESIA_BASE=$DATA_DIR/rabbitmq/mnesia
	export RABBITMQ_LOG_BASE=$LOG_DIR
	export RABBITMQ_LOGS=$LOG_DIR/rabbitmq-node.log
	export RABBITMQ_PID_FILE=$RUN_DIR/rabbitmq.pid
	export RABBITMQ_NODE_IP_ADDRESS=$SERVICE_HOST
	export RABBITMQ_NODE_PORT=$RABBIT_PORT
	export RABBITMQ_DIST_PORT=$RABBIT_DIST_PORT
	export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
	export ERL_EPMD_PORT=$RABBIT_EPMD_PORT
	export ERL_EPMD_ADDRESS=$SERVICE_HOST
}

rabbitmqctl_() { (rabbit_env && "$RABBIT_BIN/rabbitmqctl" -q "$@"); }

epmd_up() { epmd -port "$RABBIT_EPMD_PORT" -names; }

start_epmd_daemon() {
	require_port_free epmd "$RABBIT_EPMD_PORT" RABBIT_EPMD_PORT
	start_daemon epmd /usr/bin/epmd -port "$RABBIT_EPMD_PORT" -address "$SERVICE_HOST"
	wait_until epmd "$SERVICE_TIMEOUT" epmd_up
}

rabbit_up() {
	rabbitmqctl_ await_startup --timeout 5 && port_open "$RABBIT_PORT"
}

start_rabbitmq_daemon() {
	require_port_free rabbitmq "$RABBIT_PORT" RABBIT_PORT
	require_port_free rabbitmq "$RABBIT_DIST_PORT" RABBIT_DIST_PORT
	(rabbit_env && start_daemon rabbitmq "$RABBIT_BIN/rabbitmq-server")
	wait_until rabbitmq "$SERVICE_TIMEOUT" rabbit_up
	# The script keeps running as the parent of the Erlang VM and does not
	# pass signals on: from now on the VM (its PID file) is "rabbitmq", so
	# SIGTERM reaches the node, which then shuts down cleanly.
	local beam
	beam=$(cat "$RUN_DIR/rabbitmq.pid" 2>/dev/null) || die "rabbitmq: no PID file $RUN_DIR/rabbitmq.pid"
	adopt_pid rabbitmq "$beam"
	log "rabbitmq: node $RABBIT_NODENAME ready on $SERVICE_HOST:$RABBIT_PORT"
}

rabbitmq_config() {
	mkdir -p "$ETC_DIR/rabbitmq" "$DATA_DIR/rabbitmq/mnesia" "$RUN_DIR"
	write_file "$ETC_DIR/rabbitmq/rabbitmq.conf" 0644 <<-EOF
		# Written by devstack/stack.sh.
		loopback_users.guest = true
		log.file.level = info
		log.console = false
		# A test box's disk is often fuller than RabbitMQ's default 50 MB
		# floor matters for; keep publishing unless the disk is nearly full.
		disk_free_limit.absolute = 100MB
	EOF
	write_file "$ETC_DIR/rabbitmq/enabled_plugins" 0644 <<<"[]."
	write_file "$ETC_DIR/rabbitmq/rabbitmq-env.conf" 0644 <<<"# Written by devstack/stack.sh: settings come from its environment."
	write_file "$ETC_DIR/rabbitmq/advanced.config" 0644 <<<"[]."
	local cookie=$DATA_DIR/rabbitmq/.erlang.cookie
	if [[ ! -s $cookie ]]; then
		head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$cookie"
		chmod 400 "$cookie"
	fi
}

rabbitmq_hash() {
	digest "$ETC_DIR/rabbitmq/rabbitmq.conf" "$ETC_DIR/rabbitmq/enabled_plugins" \
		"$RABBIT_PORT $RABBIT_DIST_PORT $RABBIT_EPMD_PORT $SERVICE_HOST"
}

stack_rabbitmq() {
	rabbitmq_config
	ensure_daemon epmd "$(digest "epmd $RABBIT_EPMD_PORT $SERVICE_HOST")" start_epmd_daemon
	ensure_daemon rabbitmq "$(rabbitmq_hash)" start_rabbitmq_daemon

	if rabbitmqctl_ list_users | awk '{print $1}' | grep -qx "$RABBIT_USER"; then
		rabbitmqctl_ change_password "$RABBIT_USER" "$RABBIT_PASSWORD" >/dev/null
	else
		rabbitmqctl_ add_user "$RABBIT_USER" "$RABBIT_PASSWORD" >/dev/null
	fi
	rabbitmqctl_ set_permissions -p / "$RABBIT_USER" '.*' '.*' '.*' >/dev/null
	log "rabbitmq: user $RABBIT_USER with all permissions on vhost /"
	# Nothing reads the notification queues on this stack (Ceilometer would):
	# keep their newest RABBIT_NOTIFICATIONS_MAX messages, not all of them.
	rabbitmqctl_ set_policy --apply-to queues notifications-cap '^notifications\.' \
		"{\"max-length\": $RABBIT_NOTIFICATIONS_MAX}" >/dev/null
	log "rabbitmq: notifications.* queues keep their newest $RABBIT_NOTIFICATIONS_MAX messages"
}

# restart_rabbitmq [DOWN_SECONDS]: stop the node (epmd stays), stay down
# DOWN_SECONDS, start it again and wait until it is ready.
restart_rabbitmq() {
	stop_daemon rabbitmq 60
	if ((${1:-0} > 0)); then
		log "rabbitmq: staying down for ${1}s"
		sleep "$1"
	fi
	start_rabbitmq_daemon
	printf '%s\n' "$(rabbitmq_hash)" >"$PID_DIR/rabbitmq.hash"
}

# engine_queue_consumers: consumers of the engines' RPC queue (0 when the
# queue does not exist yet).
engine_queue_consumers() {
	rabbitmqctl_ list_queues name consumers 2>/dev/null |
		awk -v q="$QINLING_ENGINE_QUEUE" '$1 == q {print $2; found=1} END {if (!found) print 0}'
}

# shellcheck shell=bash
# devstack/lib/qinling.sh: qinling-api and QINLING_ENGINES qinling-engine
# processes built from QINLING_REPO, one shared config file plus a small
# per-engine one, the schema made by `qinling-api db-sync`.
#
# Layout: $STACK_DIR/bin/{qinling-api,qinling-engine}, etc/qinling.conf,
# etc/engine-N.conf, data/qinling/{api,engine-N} (each process's state_path),
# data/qinling/packages (with QINLING_STORAGE=local: package storage shared
# by the API, which stores uploads, and the engines, which unpack them;
# swift and s3 keep packages in lib/swift.sh's Swift instead).

QINLING_ENGINE_QUEUE=${QINLING_ENGINE_QUEUE:-qinling_engine}

qinling_paths() {
	QINLING_CONF=$ETC_DIR/qinling.conf
	QINLING_URL=http://$SERVICE_HOST:$QINLING_API_PORT
}

# build_qinling: go build into bin.new, then move each binary into bin only
# when it changed (a running binary is replaced by rename, never rewritten).
build_qinling() {
	local new=$STACK_DIR/bin.new b
	command -v go >/dev/null || export PATH=$PATH:/usr/local/go/bin
	command -v go >/dev/null || die "go not found (expected /usr/local/go/bin/go)"
	mkdir -p "$BIN_DIR" "$new"
	log "qinling: go build ./qinling-api ./qinling-engine in $QINLING_REPO"
	(cd "$QINLING_REPO" && GOFLAGS=${GOFLAGS:--buildvcs=false} go build -o "$new/" ./qinling-api ./qinling-engine) \
		>"$LOG_DIR/build.log" 2>&1 || die "go build failed:
$(tail -n 30 "$LOG_DIR/build.log")"
	for b in qinling-api qinling-engine; do
		if [[ -f $BIN_DIR/$b ]] && cmp -s "$new/$b" "$BIN_DIR/$b"; then
			rm -f "$new/$b"
		else
			mv -f "$new/$b" "$BIN_DIR/$b"
		fi
	done
	rmdir "$new"
}

qinling_config() {
	mkdir -p "$DATA_DIR/qinling/api"
	[[ $QINLING_STORAGE == local ]] && mkdir -p "$DATA_DIR/qinling/packages"
	write_file "$QINLING_CONF" 0600 <<-EOF
		# Written by devstack/stack.sh; qinling-api and every engine read it
		# (the engines also read their etc/engine-N.conf, which wins).
		[DEFAULT]
		state_path = $DATA_DIR/qinling/api
		transport_url = rabbit://$RABBIT_USER:$RABBIT_PASSWORD@$SERVICE_HOST:$RABBIT_PORT/
		qinling_endpoint = $QINLING_URL
		debug = $QINLING_DEBUG

		[api]
		host = $SERVICE_HOST
		port = $QINLING_API_PORT

		[pecan]
		auth_enable = true

		[keystone_authtoken]
		www_authenticate_uri = http://$SERVICE_HOST:$KEYSTONE_PORT
		auth_url = http://$SERVICE_HOST:$KEYSTONE_PORT
		username = qinling
		password = $SERVICE_PASSWORD
		project_name = service
		user_domain_name = Default
		project_domain_name = Default
		region_name = $REGION_NAME

		[database]
		connection = mysql+pymysql://qinling:$DATABASE_PASSWORD@$SERVICE_HOST:$MYSQL_PORT/qinling?charset=utf8mb4

		[etcd]
		embedded = false
		host = $SERVICE_HOST
		port = $ETCD_PORT

		[engine]
		topic = $QINLING_ENGINE_QUEUE
		orchestrator = $QINLING_ORCHESTRATOR
		$(qinling_expiration_config)

		[storage]
		max_package_size = $QINLING_MAX_PACKAGE_SIZE
		$(qinling_storage_config)

		[oslo_messaging_notifications]
		driver = $QINLING_NOTIFICATIONS

		[local_orchestrator]
		pool_size = $QINLING_POOL_SIZE
		# One directory for every engine's workers: each engine runs
		# executions on its own workers only, but any engine can stop any
		# worker of the machine (detach, scale down, idle expiry, function
		# delete reach whichever engine RabbitMQ hands them to).
		workers_dir = $DATA_DIR/qinling/workers
		$(qinling_kubernetes_config)
	EOF
	local i
	for ((i = 1; i <= QINLING_ENGINES; i++)); do
		mkdir -p "$DATA_DIR/qinling/engine-$i"
		write_file "$ETC_DIR/engine-$i.conf" 0600 <<-EOF
			# Written by devstack/stack.sh: what differs for engine-$i.
			[DEFAULT]
			state_path = $DATA_DIR/qinling/engine-$i

			[engine]
			host = engine-$i

			[metrics]
			engine_address = $(engine_metrics_address "$i")
		EOF
	done
}

# qinling_expiration_config: a short idle expiry when asked for one.
qinling_expiration_config() {
	[[ -n $QINLING_FUNCTION_EXPIRATION ]] || return 0
	printf '%s\n' "function_service_expiration = $QINLING_FUNCTION_EXPIRATION" \
		"function_service_expiration_interval = $(((QINLING_FUNCTION_EXPIRATION + 2) / 3))"
}

# qinling_kubernetes_config: with the kubernetes orchestrator, where the
# engines find the cluster devstack runs (lib/kubernetes.sh): the qinling
# identity's kubeconfig, its namespace, one Deployment of QINLING_POOL_SIZE
# pods per runtime, and images that exist only in the node's containerd.
qinling_kubernetes_config() {
	[[ $QINLING_ORCHESTRATOR == kubernetes ]] || return 0
	printf '\n%s\n' '[kubernetes]'
	printf '%s\n' "kubeconfig = $KUBECONFIG_QINLING" \
		"namespace = $K8S_NAMESPACE" \
		"replicas = $QINLING_POOL_SIZE" \
		'image_pull_policy = Never'
}

start_qinling_api_daemon() {
	require_port_free qinling-api "$QINLING_API_PORT" QINLING_API_PORT
	start_daemon qinling-api env ${QINLING_GOMAXPROCS:+GOMAXPROCS=$QINLING_GOMAXPROCS} "$BIN_DIR/qinling-api" --config-file "$QINLING_CONF"
	wait_until qinling-api "$SERVICE_TIMEOUT" http_ok "$QINLING_URL/"
	log "qinling-api: ready at $QINLING_URL"
}

running_engines() {
	local i n=0
	for ((i = 1; i <= QINLING_ENGINES; i++)); do
		is_running "engine-$i" && n=$((n + 1))
	done
	printf '%s' "$n"
}

# engines_consuming: the RPC queue has exactly one consumer per running
# engine (RabbitMQ counts one per engine): the readiness probe of
# qinling-engine. Exactly, so that a consumer of a just-stopped engine that
# the broker has not dropped yet cannot pass for the new one.
engines_consuming() {
	local have
	have=$(engine_queue_consumers)
	((have == $(running_engines)))
}

# start_engine N: start engine-N and wait until it consumes the RPC queue.
start_engine() {
	local name=engine-$1
	start_daemon "$name" env ${QINLING_GOMAXPROCS:+GOMAXPROCS=$QINLING_GOMAXPROCS} "$BIN_DIR/qinling-engine" --config-file "$QINLING_CONF" --config-file "$ETC_DIR/$name.conf"
	# A broken engine usually exits within a second or two.
	sleep 1
	wait_until "$name" "$SERVICE_TIMEOUT" engines_consuming
	log "$name: ready (RabbitMQ queue $QINLING_ENGINE_QUEUE has $(engine_queue_consumers) consumers)"
}

# engine_metrics_address N: where engine-N serves /metrics (lib/prometheus.sh
# scrapes it).
engine_metrics_address() {
	printf '%s:%d' "$SERVICE_HOST" "$((QINLING_ENGINE_METRICS_PORT + $1 - 1))"
}

# The daemons' hashes cover what they are started with, so that re-running
# stack.sh after changing the binary, the configuration or GOMAXPROCS
# restarts them.
qinling_api_hash() {
	digest "$BIN_DIR/qinling-api" "$QINLING_CONF" "GOMAXPROCS=$QINLING_GOMAXPROCS"
}

engine_hash() {
	digest "$BIN_DIR/qinling-engine" "$QINLING_CONF" "$ETC_DIR/engine-$1.conf" "GOMAXPROCS=$QINLING_GOMAXPROCS"
}

stack_qinling() {
	qinling_paths
	build_qinling
	qinling_config
	log "qinling: db-sync"
	"$BIN_DIR/qinling-api" db-sync --config-file "$QINLING_CONF" >>"$LOG_DIR/qinling-db-sync.log" 2>&1 ||
		die "qinling-api db-sync failed:
$(tail -n 20 "$LOG_DIR/qinling-db-sync.log")"
	tail -n 1 "$LOG_DIR/qinling-db-sync.log" | sed 's/^/stack:   /' >&2

	ensure_daemon qinling-api "$(qinling_api_hash)" start_qinling_api_daemon

	local i f name
	for ((i = 1; i <= QINLING_ENGINES; i++)); do
		# shellcheck disable=SC2329
		eval "start_engine_$i() { start_engine $i; }"
		ensure_daemon "engine-$i" "$(engine_hash "$i")" "start_engine_$i"
	done
	# Engines beyond QINLING_ENGINES left by an earlier run with more.
	for f in "$PID_DIR"/engine-*.pid; do
		[[ -e $f ]] || continue
		name=$(basename "$f" .pid)
		((${name#engine-} > QINLING_ENGINES)) && stop_daemon "$name"
	done
	return 0
}

# restart_qinling NAME: restart qinling-api or engine-N and wait until ready.
restart_qinling() {
	qinling_paths
	case $1 in
	qinling-api)
		stop_daemon qinling-api
		start_qinling_api_daemon
		printf '%s\n' "$(qinling_api_hash)" >"$PID_DIR/qinling-api.hash"
		;;
	engine-*)
		local n=${1#engine-}
		[[ $n =~ ^[0-9]+$ ]] && ((n >= 1 && n <= QINLING_ENGINES)) || die "no $1: QINLING_ENGINES=$QINLING_ENGINES"
		stop_daemon "$1"
		start_engine "$n"
		printf '%s\n' "$(engine_hash "$n")" >"$PID_DIR/$1.hash"
		;;
	esac
}

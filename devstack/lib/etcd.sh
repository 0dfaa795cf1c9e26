# shellcheck shell=bash
# devstack/lib/etcd.sh: a one-member etcd cluster with a private data
# directory, client and peer URLs on loopback.

ETCD_PACKAGES=(etcd-server)

etcd_args() {
	local client=http://$SERVICE_HOST:$ETCD_PORT peer=http://$SERVICE_HOST:$ETCD_PEER_PORT
	printf '%s\n' /usr/bin/etcd --name qinling-stack --data-dir "$DATA_DIR/etcd" \
		--listen-client-urls "$client" --advertise-client-urls "$client" \
		--listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
		--initial-cluster "qinling-stack=$peer" --initial-cluster-state new \
		--initial-cluster-token qinling-stack --logger zap --log-outputs stderr
}

etcd_healthy() {
	curl -sf -m 5 "http://$SERVICE_HOST:$ETCD_PORT/health" | grep -q '"health":"true"'
}

start_etcd_daemon() {
	local args
	mapfile -t args < <(etcd_args)
	require_port_free etcd "$ETCD_PORT" ETCD_PORT
	require_port_free etcd "$ETCD_PEER_PORT" ETCD_PEER_PORT
	start_daemon etcd "${args[@]}"
	wait_until etcd "$SERVICE_TIMEOUT" etcd_healthy
	log "etcd: ready on $SERVICE_HOST:$ETCD_PORT"
}

stack_etcd() {
	mkdir -p "$DATA_DIR/etcd"
	chmod 700 "$DATA_DIR/etcd"
	local args
	mapfile -t args < <(etcd_args)
	ensure_daemon etcd "$(digest "${args[@]}")" start_etcd_daemon
}

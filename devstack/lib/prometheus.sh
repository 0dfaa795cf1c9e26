# shellcheck shell=bash
# devstack/lib/prometheus.sh: Debian's Prometheus on loopback, with its own
# configuration and data directory under STACK_DIR, scraping qinling-api's
# /metrics and every engine's ([metrics] engine_address, written into
# etc/engine-N.conf by lib/qinling.sh) every PROMETHEUS_SCRAPE_INTERVAL.
# The package's own service is never started (no systemd here; .ci/run and
# ensure_packages forbid it with policy-rc.d).

PROMETHEUS_PACKAGES=(prometheus)

prometheus_paths() {
	PROMETHEUS_CONF=$ETC_DIR/prometheus.yml
	PROMETHEUS_DATA=$DATA_DIR/prometheus
	PROMETHEUS_URL=http://$SERVICE_HOST:$PROMETHEUS_PORT
}

prometheus_config() {
	local i targets=""
	for ((i = 1; i <= QINLING_ENGINES; i++)); do
		targets+="${targets:+, }'$(engine_metrics_address "$i")'"
	done
	write_file "$PROMETHEUS_CONF" 0600 <<-EOF
		# Written by devstack/stack.sh (devstack/lib/prometheus.sh).
		global:
		  scrape_interval: $PROMETHEUS_SCRAPE_INTERVAL
		  scrape_timeout: $PROMETHEUS_SCRAPE_INTERVAL
		scrape_configs:
		  - job_name: qinling-api
		    static_configs:
		      - targets: ['$SERVICE_HOST:$QINLING_API_PORT']
		  - job_name: qinling-engine
		    static_configs:
		      - targets: [$targets]
	EOF
}

prometheus_ready() { curl -sf -m 5 "$PROMETHEUS_URL/-/ready" >/dev/null; }

start_prometheus_daemon() {
	require_port_free prometheus "$PROMETHEUS_PORT" PROMETHEUS_PORT
	start_daemon prometheus /usr/bin/prometheus --config.file "$PROMETHEUS_CONF" \
		--storage.tsdb.path "$PROMETHEUS_DATA" --storage.tsdb.retention.time 7d \
		--web.listen-address "$SERVICE_HOST:$PROMETHEUS_PORT"
	wait_until prometheus "$SERVICE_TIMEOUT" prometheus_ready
	log "prometheus: ready on $PROMETHEUS_URL"
}

stack_prometheus() {
	prometheus_paths
	mkdir -p "$PROMETHEUS_DATA"
	chmod 700 "$PROMETHEUS_DATA"
	prometheus_config
	ensure_daemon prometheus "$(digest /usr/bin/prometheus "$PROMETHEUS_CONF")" start_prometheus_daemon
}

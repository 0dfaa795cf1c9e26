#!/usr/bin/env bash
# devstack/stack.sh: bring up qinling-go's real stack on this machine: a
# private MariaDB, RabbitMQ (with its own epmd), etcd and Keystone (uwsgi),
# then qinling-api and QINLING_ENGINES qinling-engine processes built from
# this tree, all on 127.0.0.1 with the ports in devstack/settings, all state
# under STACK_DIR (default /opt/qinling-stack). No systemd: every daemon is
# started here, detached, and recorded in STACK_DIR/pids for unstack.sh.
#
# Idempotent: a second run starts what is not running, restarts what changed
# (a rebuilt binary, a new setting) and leaves the rest alone, so there is
# always one of each daemon.
#
#   devstack/stack.sh                  everything
#   QINLING_ENGINES=3 devstack/stack.sh
#   ENABLED_SERVICES="mariadb rabbitmq etcd keystone" devstack/stack.sh
#   QINLING_ORCHESTRATOR=kubernetes devstack/stack.sh   engines on a real
#                                      single-node Kubernetes it builds here
#
# Writes STACK_DIR/openrc-{admin,demo,alt_demo} and STACK_DIR/stack.env (the
# settings in KEY=VALUE form, which unstack.sh, restart.sh and the tests read).
set -euo pipefail

DEVSTACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=devstack/settings
source "$DEVSTACK_DIR/settings"
# shellcheck source=devstack/lib/common.sh
source "$DEVSTACK_DIR/lib/common.sh"
for lib in mariadb rabbitmq etcd keystone swift kubernetes kubernetes-images qinling prometheus horizon; do
	# shellcheck source=/dev/null
	source "$DEVSTACK_DIR/lib/$lib.sh"
done

# with_orchestrator_services: the kubernetes orchestrator needs its cluster,
# started before the engines.
with_orchestrator_services() {
	case $QINLING_ORCHESTRATOR in
	local) ;;
	kubernetes)
		if service_enabled qinling && ! service_enabled kubernetes; then
			ENABLED_SERVICES=$(sed -E 's/(^| )qinling( |$)/\1kubernetes qinling\2/' <<<"$ENABLED_SERVICES")
		fi
		;;
	*) die "QINLING_ORCHESTRATOR='$QINLING_ORCHESTRATOR': use local or kubernetes" ;;
	esac
}

# with_storage_services: swift and s3 package storage need the swift
# service (lib/swift.sh), started after keystone and before qinling.
with_storage_services() {
	case $QINLING_STORAGE in
	local) ;;
	swift | s3)
		if service_enabled qinling && ! service_enabled swift; then
			ENABLED_SERVICES=$(sed -E 's/(^| )qinling( |$)/\1swift qinling\2/' <<<"$ENABLED_SERVICES")
		fi
		;;
	*) die "QINLING_STORAGE='$QINLING_STORAGE': use local, swift or s3" ;;
	esac
}

# write_stack_env: every setting plus the derived URLs, one KEY=VALUE a line.
write_stack_env() {
	{
		stack_env_lines
		if service_enabled kubernetes; then
			kubernetes_env_lines
		fi
	} | write_file "$STACK_ENV" 0600
}

# kubernetes_env_lines: the cluster's settings, and what the engines and
# the tests need to use it.
kubernetes_env_lines() {
	cat <<-EOF
		KUBE_VERSION=$KUBE_VERSION
		KUBE_CACHE_DIR=$KUBE_CACHE_DIR
		KUBE_ETCD_PORT=$KUBE_ETCD_PORT
		KUBE_ETCD_PEER_PORT=$KUBE_ETCD_PEER_PORT
		KUBE_APISERVER_PORT=$KUBE_APISERVER_PORT
		KUBE_CONTROLLER_MANAGER_PORT=$KUBE_CONTROLLER_MANAGER_PORT
		KUBE_SCHEDULER_PORT=$KUBE_SCHEDULER_PORT
		KUBE_HOST_IP=$KUBE_HOST_IP
		KUBE_NODE_IP=$KUBE_NODE_IP
		KUBE_POD_CIDR=$KUBE_POD_CIDR
		KUBE_SERVICE_CIDR=$KUBE_SERVICE_CIDR
		KUBE_NODE_NAME=$KUBE_NODE_NAME
		KUBE_DIR=$KUBE_DIR
		KUBE_CONTAINERD_SOCK=$KUBE_CONTAINERD_SOCK
		K8S_API_URL=$KUBE_SERVER
		K8S_NAMESPACE=$K8S_NAMESPACE
		KUBECONFIG_ADMIN=$KUBECONFIG_ADMIN
		KUBECONFIG_QINLING=$KUBECONFIG_QINLING
		K8S_PAUSE_IMAGE=$K8S_PAUSE_IMAGE
		K8S_PYTHON_IMAGE=$K8S_PYTHON_IMAGE
		K8S_NODEJS_IMAGE=$K8S_NODEJS_IMAGE
		K8S_HELLO_IMAGE=$K8S_HELLO_IMAGE
		K8S_PYTHON_IMAGE_ALT=$K8S_PYTHON_IMAGE_ALT
		K8S_RUNTIME_PORT=$K8S_RUNTIME_PORT
		K8S_FUNCTION_EXPIRATION=$QINLING_FUNCTION_EXPIRATION
	EOF
}

stack_env_lines() {
	cat <<-EOF
		# Written by devstack/stack.sh: this stack's settings and endpoints.
		# KEY=VALUE lines; bash may source it, the Go tests parse it.
		STACK_DIR=$STACK_DIR
		DEVSTACK_DIR=$DEVSTACK_DIR
		QINLING_REPO=$QINLING_REPO
		ENABLED_SERVICES="$ENABLED_SERVICES"
		SERVICE_HOST=$SERVICE_HOST
		QINLING_ORCHESTRATOR=$QINLING_ORCHESTRATOR
		QINLING_STORAGE=$QINLING_STORAGE
		SWIFT_PORT=$SWIFT_PORT
		SWIFT_ACCOUNT_PORT=$SWIFT_ACCOUNT_PORT
		SWIFT_CONTAINER_PORT=$SWIFT_CONTAINER_PORT
		SWIFT_OBJECT_PORT=$SWIFT_OBJECT_PORT
		MEMCACHED_PORT=$MEMCACHED_PORT
		SWIFT_CONTAINER=$SWIFT_CONTAINER
		SWIFT_URL=http://$SERVICE_HOST:$SWIFT_PORT
		QINLING_API_PORT=$QINLING_API_PORT
		KEYSTONE_PORT=$KEYSTONE_PORT
		MYSQL_PORT=$MYSQL_PORT
		MARIADB_FLUSH_LOG_AT_COMMIT=$MARIADB_FLUSH_LOG_AT_COMMIT
		RABBIT_PORT=$RABBIT_PORT
		RABBIT_DIST_PORT=$RABBIT_DIST_PORT
		RABBIT_EPMD_PORT=$RABBIT_EPMD_PORT
		ETCD_PORT=$ETCD_PORT
		ETCD_PEER_PORT=$ETCD_PEER_PORT
		HORIZON_PORT=$HORIZON_PORT
		HORIZON_PROCESSES=$HORIZON_PROCESSES
		HORIZON_URL=http://$SERVICE_HOST:$HORIZON_PORT/
		QINLING_ENGINES=$QINLING_ENGINES
		QINLING_POOL_SIZE=$QINLING_POOL_SIZE
		QINLING_GOMAXPROCS=$QINLING_GOMAXPROCS
		QINLING_DEBUG=$QINLING_DEBUG
		QINLING_NOTIFICATIONS=$QINLING_NOTIFICATIONS
		RABBIT_URL=amqp://$RABBIT_USER:$RABBIT_PASSWORD@$SERVICE_HOST:$RABBIT_PORT/
		QINLING_MAX_PACKAGE_SIZE=$QINLING_MAX_PACKAGE_SIZE
		QINLING_FUNCTION_EXPIRATION=$QINLING_FUNCTION_EXPIRATION
		QINLING_ENGINE_QUEUE=$QINLING_ENGINE_QUEUE
		QINLING_ENGINE_METRICS_PORT=$QINLING_ENGINE_METRICS_PORT
		PROMETHEUS_PORT=$PROMETHEUS_PORT
		PROMETHEUS_SCRAPE_INTERVAL=$PROMETHEUS_SCRAPE_INTERVAL
		PROMETHEUS_URL=http://$SERVICE_HOST:$PROMETHEUS_PORT
		KEYSTONE_PROCESSES=$KEYSTONE_PROCESSES
		KEYSTONE_THREADS=$KEYSTONE_THREADS
		KEYSTONE_TOKEN_EXPIRATION=$KEYSTONE_TOKEN_EXPIRATION
		REGION_NAME=$REGION_NAME
		SERVICE_TIMEOUT=$SERVICE_TIMEOUT
		STACK_INSTALL_PACKAGES=$STACK_INSTALL_PACKAGES
		QINLING_URL=$QINLING_URL
		KEYSTONE_URL=$KEYSTONE_URL
		ADMIN_USER=admin
		ADMIN_PROJECT=admin
		ADMIN_PASSWORD=$ADMIN_PASSWORD
		DEMO_USER=demo
		DEMO_PROJECT=demo
		DEMO_PASSWORD=$DEMO_PASSWORD
		ALT_DEMO_USER=alt_demo
		ALT_DEMO_PROJECT=alt_demo
		ALT_DEMO_PASSWORD=$ALT_DEMO_PASSWORD
		SERVICE_USER=qinling
		SERVICE_PROJECT=service
		SERVICE_PASSWORD=$SERVICE_PASSWORD
		DATABASE_PASSWORD=$DATABASE_PASSWORD
		RABBIT_USER=$RABBIT_USER
		RABBIT_PASSWORD=$RABBIT_PASSWORD
		RABBIT_NODENAME=$RABBIT_NODENAME
		TRANSPORT_URL=rabbit://$RABBIT_USER:$RABBIT_PASSWORD@$SERVICE_HOST:$RABBIT_PORT/
		DATABASE_URL=mysql+pymysql://qinling:$DATABASE_PASSWORD@$SERVICE_HOST:$MYSQL_PORT/qinling?charset=utf8mb4
		MYSQL_SOCKET=$MYSQL_SOCKET
		ETCD_ENDPOINT=http://$SERVICE_HOST:$ETCD_PORT
		QINLING_CONF=$QINLING_CONF
		BIN_DIR=$BIN_DIR
		LOG_DIR=$LOG_DIR
		PID_DIR=$PID_DIR
	EOF
}

main() {
	with_orchestrator_services
	with_storage_services
	check_settings
	stack_paths
	mariadb_paths
	keystone_paths
	qinling_paths
	kubernetes_paths
	horizon_paths
	mkdir -p "$STACK_DIR" "$BIN_DIR" "$ETC_DIR" "$DATA_DIR" "$RUN_DIR" "$LOG_DIR" "$PID_DIR"
	chmod 700 "$STACK_DIR"
	# unstack.sh --purge removes only a directory carrying this mark.
	touch "$STACK_DIR/.qinling-stack"
	exec 9>"$STACK_DIR/.lock"
	flock -n 9 || die "another stack.sh, unstack.sh or restart.sh is working on $STACK_DIR"
	log "stacking into $STACK_DIR (services: $ENABLED_SERVICES)"
	write_stack_env

	local packages=(curl python3-openstackclient python3-qinlingclient) svc
	service_enabled mariadb && packages+=("${MARIADB_PACKAGES[@]}")
	service_enabled rabbitmq && packages+=("${RABBITMQ_PACKAGES[@]}")
	service_enabled etcd && packages+=("${ETCD_PACKAGES[@]}")
	service_enabled keystone && packages+=("${KEYSTONE_PACKAGES[@]}")
	service_enabled swift && packages+=("${SWIFT_PACKAGES[@]}")
	service_enabled kubernetes && packages+=("${KUBERNETES_PACKAGES[@]}")
	service_enabled horizon && packages+=("${HORIZON_PACKAGES[@]}")
	service_enabled prometheus && packages+=("${PROMETHEUS_PACKAGES[@]}")
	install_packages "${packages[@]}"

	for svc in $ENABLED_SERVICES; do
		case $svc in
		mariadb | rabbitmq | etcd | swift | kubernetes | qinling | prometheus | horizon) "stack_$svc" ;;
		keystone) stack_keystone && stack_openrc ;;
		*) die "ENABLED_SERVICES: unknown service '$svc' (known: mariadb rabbitmq etcd keystone swift kubernetes qinling prometheus horizon)" ;;
		esac
	done

	log "done in $((SECONDS - STACK_T0))s"
	printf '\nqinling-go stack is up (state in %s, logs in %s).\n' "$STACK_DIR" "$LOG_DIR"
	if service_enabled keystone; then
		printf '  Keystone     %s\n' "$KEYSTONE_URL"
	fi
	if service_enabled qinling; then
		printf '  qinling-api  %s (%s engines, orchestrator %s)\n' "$QINLING_URL" "$QINLING_ENGINES" "$QINLING_ORCHESTRATOR"
	fi
	if service_enabled prometheus; then
		printf '  Prometheus   http://%s:%s (scrapes the API and every engine)\n' "$SERVICE_HOST" "$PROMETHEUS_PORT"
	fi
	if service_enabled swift; then
		printf '  Swift        %s (packages: %s, container %s)\n' "http://$SERVICE_HOST:$SWIFT_PORT" "$QINLING_STORAGE" "$SWIFT_CONTAINER"
	fi
	if service_enabled horizon; then
		printf '  Dashboard    %s (demo / %s; admin / %s)\n' "$HORIZON_URL" "$DEMO_PASSWORD" "$ADMIN_PASSWORD"
	fi
	if service_enabled kubernetes; then
		printf '  Kubernetes   %s (node %s, namespace %s)\n' "$KUBE_SERVER" "$KUBE_NODE_NAME" "$K8S_NAMESPACE"
		printf '  kubectl      KUBECONFIG=%s kubectl get pods -A\n' "$KUBECONFIG_ADMIN"
	fi
	cat <<-EOF
		Use it with the openstack CLI (Debian's: /usr/bin/openstack):
		  . $STACK_DIR/openrc-demo        # or openrc-alt_demo; openrc-admin for runtimes
		  /usr/bin/openstack function list
		Stop it with devstack/unstack.sh (add --purge to delete its data).
	EOF
}

main "$@"

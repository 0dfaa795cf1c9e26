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
#
# Writes STACK_DIR/openrc-{admin,demo,alt_demo} and STACK_DIR/stack.env (the
# settings in KEY=VALUE form, which unstack.sh, restart.sh and the tests read).
set -euo pipefail

DEVSTACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=devstack/settings
source "$DEVSTACK_DIR/settings"
# shellcheck source=devstack/lib/common.sh
source "$DEVSTACK_DIR/lib/common.sh"
for lib in mariadb rabbitmq etcd keystone qinling; do
	# shellcheck source=/dev/null
	source "$DEVSTACK_DIR/lib/$lib.sh"
done

# write_stack_env: every setting plus the derived URLs, one KEY=VALUE a line.
write_stack_env() {
	write_file "$STACK_ENV" 0600 <<-EOF
		# Written by devstack/stack.sh: this stack's settings and endpoints.
		# KEY=VALUE lines; bash may source it, the Go tests parse it.
		STACK_DIR=$STACK_DIR
		DEVSTACK_DIR=$DEVSTACK_DIR
		QINLING_REPO=$QINLING_REPO
		ENABLED_SERVICES="$ENABLED_SERVICES"
		SERVICE_HOST=$SERVICE_HOST
		QINLING_API_PORT=$QINLING_API_PORT
		KEYSTONE_PORT=$KEYSTONE_PORT
		MYSQL_PORT=$MYSQL_PORT
		RABBIT_PORT=$RABBIT_PORT
		RABBIT_DIST_PORT=$RABBIT_DIST_PORT
		RABBIT_EPMD_PORT=$RABBIT_EPMD_PORT
		ETCD_PORT=$ETCD_PORT
		ETCD_PEER_PORT=$ETCD_PEER_PORT
		QINLING_ENGINES=$QINLING_ENGINES
		QINLING_POOL_SIZE=$QINLING_POOL_SIZE
		QINLING_DEBUG=$QINLING_DEBUG
		QINLING_MAX_PACKAGE_SIZE=$QINLING_MAX_PACKAGE_SIZE
		QINLING_ENGINE_QUEUE=$QINLING_ENGINE_QUEUE
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
	check_settings
	stack_paths
	mariadb_paths
	keystone_paths
	qinling_paths
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
	install_packages "${packages[@]}"

	for svc in $ENABLED_SERVICES; do
		case $svc in
		mariadb | rabbitmq | etcd | qinling) "stack_$svc" ;;
		keystone) stack_keystone && stack_openrc ;;
		*) die "ENABLED_SERVICES: unknown service '$svc' (known: mariadb rabbitmq etcd keystone qinling)" ;;
		esac
	done

	log "done in $((SECONDS - STACK_T0))s"
	cat <<-EOF

		qinling-go stack is up (state in $STACK_DIR, logs in $LOG_DIR).
		  Keystone     $KEYSTONE_URL
		  qinling-api  $QINLING_URL ($QINLING_ENGINES engines)
		Use it with the openstack CLI (Debian's: /usr/bin/openstack):
		  . $STACK_DIR/openrc-demo        # or openrc-alt_demo; openrc-admin for runtimes
		  /usr/bin/openstack function list
		Stop it with devstack/unstack.sh (add --purge to delete its data).
	EOF
}

main "$@"

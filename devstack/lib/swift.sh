# shellcheck shell=bash
# devstack/lib/swift.sh: a one-node OpenStack Swift from Debian's packages
# for package storage (QINLING_STORAGE=swift or s3): memcached and the
# account, container, object and proxy servers on loopback, each a
# foreground daemon logging to its file in LOG_DIR. The proxy authenticates
# with Keystone (authtoken, keystoneauth) and answers S3 too (s3api,
# s3token: EC2 credentials). Registered in Keystone's catalog as
# object-store; swift-init.py makes qinling's EC2 credential and container.
#
# Layout: $DATA_DIR/swift/{*.conf,*.ring.gz,node/d1}. Rings are built once
# per set of ports (Swift's RingBuilder in one python3 run) and kept.

SWIFT_PACKAGES=(swift-proxy swift-account swift-container swift-object memcached python3-keystonemiddleware)

swift_paths() {
	SWIFT_DIR=$DATA_DIR/swift
	SWIFT_URL=http://$SERVICE_HOST:$SWIFT_PORT
	SWIFT_EC2_FILE=$SWIFT_DIR/qinling-ec2
}

# swift_rings: account, container and object rings of one device each,
# rebuilt only when a port changed.
swift_rings() {
	local want stamp=$SWIFT_DIR/rings.ports
	want="$SWIFT_ACCOUNT_PORT $SWIFT_CONTAINER_PORT $SWIFT_OBJECT_PORT"
	if [[ -f $stamp && $(<"$stamp") == "$want" && -f $SWIFT_DIR/object.ring.gz ]]; then
		return 0
	fi
	log "swift: building rings"
	(cd "$SWIFT_DIR" && /usr/bin/python3 - "$SERVICE_HOST" $want) <<-'EOF' || die "swift: building rings failed"
		import sys
		from swift.common.ring import RingBuilder
		host, ports = sys.argv[1], sys.argv[2:]
		for kind, port in zip(("account", "container", "object"), ports):
		    b = RingBuilder(8, 1, 1)
		    b.add_dev({"id": 0, "region": 1, "zone": 1, "ip": host, "port": int(port), "device": "d1", "weight": 100})
		    b.rebalance()
		    b.get_ring().save(kind + ".ring.gz")
	EOF
	printf '%s\n' "$want" >"$stamp"
}

# swift_server_conf KIND PORT
swift_server_conf() {
	write_file "$SWIFT_DIR/$1-server.conf" 0600 <<-EOF
		[DEFAULT]
		bind_ip = $SERVICE_HOST
		bind_port = $2
		devices = $SWIFT_DIR/node
		mount_check = false
		swift_dir = $SWIFT_DIR
		user = root
		workers = 1
		log_name = $1-server

		[pipeline:main]
		pipeline = $1-server

		[app:$1-server]
		use = egg:swift#$1
	EOF
}

swift_proxy_conf() {
	write_file "$SWIFT_DIR/proxy-server.conf" 0600 <<-EOF
		[DEFAULT]
		bind_ip = $SERVICE_HOST
		bind_port = $SWIFT_PORT
		swift_dir = $SWIFT_DIR
		user = root
		workers = 1
		log_name = proxy-server

		# authtoken before s3api s3token, as Swift's s3api docs order them:
		# after s3token it would drop the identity s3token sets.
		[pipeline:main]
		pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats authtoken s3api s3token keystoneauth copy dlo slo proxy-logging proxy-server

		[app:proxy-server]
		use = egg:swift#proxy
		account_autocreate = true

		# Keystone's POST /v3/s3tokens takes only an admin's or a service's
		# token (keystone's s3tokens_validate policy; Debian's keystone
		# 2:22.0.2-0+deb12u6): s3token calls it as the qinling user.
		[filter:s3token]
		use = egg:swift#s3token
		auth_uri = http://$SERVICE_HOST:$KEYSTONE_PORT/v3
		$(swift_service_auth)

		[filter:authtoken]
		paste.filter_factory = keystonemiddleware.auth_token:filter_factory
		www_authenticate_uri = http://$SERVICE_HOST:$KEYSTONE_PORT
		$(swift_service_auth)
		region_name = $REGION_NAME
		delay_auth_decision = True
		memcached_servers = $SERVICE_HOST:$MEMCACHED_PORT

		[filter:keystoneauth]
		use = egg:swift#keystoneauth
		operator_roles = admin, member

		[filter:cache]
		use = egg:swift#memcache
		memcache_servers = $SERVICE_HOST:$MEMCACHED_PORT
		$(swift_plain_filters)
	EOF
}

# swift_service_auth: the password auth options of the qinling service
# user, which authtoken and s3token authenticate as.
swift_service_auth() {
	printf '%s\n' "auth_type = password" "auth_url = http://$SERVICE_HOST:$KEYSTONE_PORT" \
		"username = qinling" "password = $SERVICE_PASSWORD" "project_name = service" \
		"user_domain_name = Default" "project_domain_name = Default"
}

# swift_plain_filters: the proxy's middlewares that need no settings.
swift_plain_filters() {
	local f
	for f in catch_errors gatekeeper healthcheck proxy-logging listing_formats s3api copy dlo slo; do
		printf '\n[filter:%s]\nuse = egg:swift#%s\n' "$f" "${f//-/_}"
	done
}

start_memcached_daemon() {
	require_port_free memcached "$MEMCACHED_PORT" MEMCACHED_PORT
	start_daemon memcached /usr/bin/memcached -l "$SERVICE_HOST" -p "$MEMCACHED_PORT" -U 0 -m 32 -u root
	wait_until memcached "$SERVICE_TIMEOUT" port_open "$MEMCACHED_PORT"
}

# start_swift_server KIND PORT: one server in the foreground; -v logs to its
# file instead of syslog (no syslog daemon runs here).
start_swift_server() {
	require_port_free "swift-$1" "$2" "SWIFT_$(tr '[:lower:]' '[:upper:]' <<<"$1")_PORT"
	start_daemon "swift-$1" "/usr/bin/swift-$1-server" "$SWIFT_DIR/$1-server.conf" -v
}

port_open() {
	(: <"/dev/tcp/$SERVICE_HOST/$1") 2>/dev/null
}

swift_healthy() {
	http_ok "$SWIFT_URL/healthcheck"
}

start_swift_account_daemon() { start_swift_server account "$SWIFT_ACCOUNT_PORT"; }
start_swift_container_daemon() { start_swift_server container "$SWIFT_CONTAINER_PORT"; }
start_swift_object_daemon() { start_swift_server object "$SWIFT_OBJECT_PORT"; }
start_swift_proxy_daemon() {
	require_port_free swift-proxy "$SWIFT_PORT" SWIFT_PORT
	start_daemon swift-proxy /usr/bin/swift-proxy-server "$SWIFT_DIR/proxy-server.conf" -v
	# The proxy's healthcheck answers before the servers behind it listen
	# (they start together, each importing Swift for seconds): a container
	# PUT then is refused with a 503.
	local kind port
	for kind in account container object; do
		port="SWIFT_${kind^^}_PORT"
		wait_until "swift-$kind" "$SERVICE_TIMEOUT" port_open "${!port}"
	done
	wait_until swift-proxy "$SERVICE_TIMEOUT" swift_healthy
	log "swift: proxy ready at $SWIFT_URL"
}

swift_proxy_hash() { digest "$SWIFT_DIR/proxy-server.conf" "$SWIFT_DIR"/*.ring.gz; }

# resume_swift_proxy: devstack/restart.sh swift-proxy, once the proxy is
# stopped: start it with the configuration stack.sh wrote.
resume_swift_proxy() {
	swift_paths
	start_swift_proxy_daemon
	swift_proxy_hash >"$PID_DIR/swift-proxy.hash"
}

stack_swift() {
	swift_paths
	keystone_paths
	mkdir -p "$SWIFT_DIR/node/d1"
	chmod 700 "$SWIFT_DIR"
	[[ -f /etc/swift/swift.conf ]] || die "swift: /etc/swift/swift.conf missing (the swift package installs it)"
	swift_rings
	swift_server_conf account "$SWIFT_ACCOUNT_PORT"
	swift_server_conf container "$SWIFT_CONTAINER_PORT"
	swift_server_conf object "$SWIFT_OBJECT_PORT"
	swift_proxy_conf
	ensure_daemon memcached "$(digest "$MEMCACHED_PORT")" start_memcached_daemon
	local kind
	for kind in account container object; do
		ensure_daemon "swift-$kind" "$(digest "$SWIFT_DIR/$kind-server.conf" "$SWIFT_DIR/$kind.ring.gz")" "start_swift_${kind}_daemon"
	done
	ensure_daemon swift-proxy "$(swift_proxy_hash)" start_swift_proxy_daemon
	KEYSTONE_URL=$KEYSTONE_URL REGION_NAME=$REGION_NAME QINLING_ENDPOINT=$QINLING_URL \
		ADMIN_PASSWORD=$ADMIN_PASSWORD SERVICE_PASSWORD=$SERVICE_PASSWORD \
		DEMO_PASSWORD=$DEMO_PASSWORD ALT_DEMO_PASSWORD=$ALT_DEMO_PASSWORD \
		SWIFT_URL=$SWIFT_URL SWIFT_CONTAINER=$SWIFT_CONTAINER EC2_FILE=$SWIFT_EC2_FILE \
		/usr/bin/python3 "$DEVSTACK_DIR/lib/swift-init.py" || die "swift: registering in Keystone failed"
}

# qinling_storage_config: the [storage] options for QINLING_STORAGE.
qinling_storage_config() {
	case $QINLING_STORAGE in
	local)
		printf '%s\n' "file_system_dir = $DATA_DIR/qinling/packages"
		;;
	swift)
		# The service user of [keystone_authtoken], through the catalog.
		printf '%s\n' "provider = swift" "swift_container = $SWIFT_CONTAINER"
		;;
	s3)
		swift_paths
		local access secret
		read -r access secret <"$SWIFT_EC2_FILE" || die "swift: no EC2 credential in $SWIFT_EC2_FILE"
		printf '%s\n' "provider = s3" "s3_endpoint = $SWIFT_URL" "s3_region = us-east-1" \
			"s3_bucket = $SWIFT_CONTAINER" "s3_access_key = $access" "s3_secret_key = $secret"
		;;
	esac
}

# shellcheck shell=bash
# devstack/lib/keystone.sh: Keystone from Debian's package, configured under
# $STACK_DIR/etc/keystone (nothing in /etc is touched), its database in the
# private MariaDB, fernet tokens, served by uwsgi with --http11-socket (keep-
# alive that urllib3 clients need) on SERVICE_HOST:KEYSTONE_PORT.

KEYSTONE_PACKAGES=(keystone uwsgi uwsgi-plugin-python3 python3-pymysql)

keystone_paths() {
	KEYSTONE_ETC=$ETC_DIR/keystone
	KEYSTONE_CONF=$KEYSTONE_ETC/keystone.conf
	KEYSTONE_URL=http://$SERVICE_HOST:$KEYSTONE_PORT/v3
}

keystone_manage() {
	keystone-manage --config-file "$KEYSTONE_CONF" "$@" >>"$LOG_DIR/keystone-manage.log" 2>&1 ||
		die "keystone-manage $1 failed; last lines of $LOG_DIR/keystone-manage.log:
$(tail -n 30 "$LOG_DIR/keystone-manage.log")"
}

keystone_config() {
	mkdir -p "$KEYSTONE_ETC" "$DATA_DIR/keystone"
	write_file "$KEYSTONE_CONF" 0600 <<-EOF
		# Written by devstack/stack.sh.
		[DEFAULT]
		# Logs go to stderr: uwsgi's log (logs/keystone.log) for the API,
		# logs/keystone-manage.log for keystone-manage.
		use_stderr = true

		[database]
		connection = mysql+pymysql://keystone:$DATABASE_PASSWORD@$SERVICE_HOST:$MYSQL_PORT/keystone?charset=utf8mb4
		max_retries = -1

		[token]
		provider = fernet
		expiration = $KEYSTONE_TOKEN_EXPIRATION

		[fernet_tokens]
		key_repository = $KEYSTONE_ETC/fernet-keys/

		[fernet_receipts]
		key_repository = $KEYSTONE_ETC/fernet-keys/

		[credential]
		key_repository = $KEYSTONE_ETC/credential-keys/

		[cache]
		enabled = false
	EOF
}

keystone_uwsgi_args() {
	printf '%s\n' /usr/bin/uwsgi --plugins python3 \
		--http11-socket "$SERVICE_HOST:$KEYSTONE_PORT" \
		--wsgi-file /usr/bin/keystone-wsgi-public \
		--master --die-on-term --no-orphans --lazy-apps --enable-threads \
		--processes "$KEYSTONE_PROCESSES" --threads "$KEYSTONE_THREADS" \
		--buffer-size 65535 --listen 100 --procname-prefix-spaced keystone \
		--chdir "$DATA_DIR/keystone" --env "OS_KEYSTONE_CONFIG_FILES=$KEYSTONE_CONF"
}

start_keystone_daemon() {
	local args
	mapfile -t args < <(keystone_uwsgi_args)
	require_port_free keystone "$KEYSTONE_PORT" KEYSTONE_PORT
	start_daemon keystone "${args[@]}"
	wait_until keystone "$SERVICE_TIMEOUT" http_ok "$KEYSTONE_URL"
	log "keystone: ready at $KEYSTONE_URL"
}

stack_keystone() {
	keystone_paths
	keystone_config

	# The schema, keys and bootstrap are redone only when their inputs
	# changed: each keystone-manage call costs seconds.
	local stamp=$KEYSTONE_ETC/.bootstrapped want
	want=$(digest "$KEYSTONE_CONF" "$ADMIN_PASSWORD $KEYSTONE_URL $REGION_NAME")
	if [[ ! -f $stamp || $(<"$stamp") != "$want" ]]; then
		log "keystone: db_sync, keys, bootstrap"
		keystone_manage db_sync
		if [[ ! -f $KEYSTONE_ETC/fernet-keys/0 ]]; then
			keystone_manage fernet_setup --keystone-user root --keystone-group root
		fi
		if [[ ! -f $KEYSTONE_ETC/credential-keys/0 ]]; then
			keystone_manage credential_setup --keystone-user root --keystone-group root
		fi
		keystone_manage bootstrap --bootstrap-password "$ADMIN_PASSWORD" \
			--bootstrap-username admin --bootstrap-project-name admin \
			--bootstrap-role-name admin --bootstrap-service-name keystone \
			--bootstrap-admin-url "$KEYSTONE_URL/" --bootstrap-public-url "$KEYSTONE_URL/" \
			--bootstrap-internal-url "$KEYSTONE_URL/" --bootstrap-region-id "$REGION_NAME"
		printf '%s\n' "$want" >"$stamp"
	fi

	local args
	mapfile -t args < <(keystone_uwsgi_args)
	ensure_daemon keystone "$(digest "$KEYSTONE_CONF" "${args[@]}")" start_keystone_daemon

	local stamp2=$KEYSTONE_ETC/.initialised
	want=$(digest "$want" "$DEMO_PASSWORD $ALT_DEMO_PASSWORD $SERVICE_PASSWORD $QINLING_API_PORT")
	if [[ -f $stamp2 && $(<"$stamp2") == "$want" ]]; then
		log "keystone: projects, users and the function-engine endpoint already in place"
	else
		KEYSTONE_URL=$KEYSTONE_URL REGION_NAME=$REGION_NAME QINLING_ENDPOINT=$QINLING_URL \
			ADMIN_PASSWORD=$ADMIN_PASSWORD DEMO_PASSWORD=$DEMO_PASSWORD \
			ALT_DEMO_PASSWORD=$ALT_DEMO_PASSWORD SERVICE_PASSWORD=$SERVICE_PASSWORD \
			/usr/bin/python3 "$DEVSTACK_DIR/lib/keystone-init.py" || die "keystone: creating projects, users and endpoints failed"
		printf '%s\n' "$want" >"$stamp2"
	fi
}

# write_openrc NAME USER PASSWORD PROJECT: $STACK_DIR/openrc-NAME, password
# auth through the catalog.
write_openrc() {
	write_file "$STACK_DIR/openrc-$1" 0600 <<-EOF
		# Source me: . $STACK_DIR/openrc-$1   (written by devstack/stack.sh)
		# Password auth as $2 in project $4; the CLI finds qinling through the
		# Keystone catalog (service type function-engine, $QINLING_URL).
		unset OS_AUTH_TYPE OS_ENDPOINT OS_TOKEN OS_URL OS_CLOUD QINLING_URL OS_PROJECT_ID OS_TENANT_NAME
		export OS_AUTH_URL=$KEYSTONE_URL
		export OS_USERNAME=$2
		export OS_PASSWORD=$3
		export OS_PROJECT_NAME=$4
		export OS_USER_DOMAIN_NAME=Default
		export OS_PROJECT_DOMAIN_NAME=Default
		export OS_IDENTITY_API_VERSION=3
		export OS_REGION_NAME=$REGION_NAME
		export OS_INTERFACE=public
	EOF
}

stack_openrc() {
	keystone_paths
	write_openrc admin admin "$ADMIN_PASSWORD" admin
	write_openrc demo demo "$DEMO_PASSWORD" demo
	write_openrc alt_demo alt_demo "$ALT_DEMO_PASSWORD" alt_demo
}

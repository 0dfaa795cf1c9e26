# shellcheck shell=bash
# devstack/lib/mariadb.sh: a private MariaDB server (own data directory,
# socket and loopback port) holding the keystone and qinling databases.

MARIADB_PACKAGES=(mariadb-server mariadb-client)

mariadb_paths() {
	MYSQL_DATA=$DATA_DIR/mysql
	MYSQL_SOCKET=$RUN_DIR/mysqld.sock
}

mariadb_args() {
	printf '%s\n' /usr/sbin/mariadbd --no-defaults --user=root \
		"--datadir=$MYSQL_DATA" "--socket=$MYSQL_SOCKET" "--port=$MYSQL_PORT" \
		"--bind-address=$SERVICE_HOST" "--pid-file=$RUN_DIR/mariadbd.pid" \
		"--log-error=$LOG_DIR/mariadb-error.log" --skip-name-resolve \
		--innodb-buffer-pool-size=128M --max-connections=500 \
		"--innodb-flush-log-at-trx-commit=$MARIADB_FLUSH_LOG_AT_COMMIT" \
		--character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci
}

# mysql_root SQL...: run statements as root over the private socket.
mysql_root() {
	mariadb --no-defaults --protocol=socket "--socket=$MYSQL_SOCKET" -uroot -N -B -e "$*"
}

mariadb_ping() {
	mariadb-admin --no-defaults --protocol=socket "--socket=$MYSQL_SOCKET" -uroot ping
}

start_mariadb_daemon() {
	local args
	mapfile -t args < <(mariadb_args)
	require_port_free mariadb "$MYSQL_PORT" MYSQL_PORT
	start_daemon mariadb "${args[@]}"
	wait_until mariadb "$SERVICE_TIMEOUT" mariadb_ping
	log "mariadb: ready on $SERVICE_HOST:$MYSQL_PORT"
}

stack_mariadb() {
	mariadb_paths
	mkdir -p "$RUN_DIR" "$DATA_DIR"
	if [[ ! -d $MYSQL_DATA/mysql ]]; then
		log "mariadb: initialising $MYSQL_DATA"
		rm -rf "$MYSQL_DATA"
		mariadb-install-db --no-defaults "--datadir=$MYSQL_DATA" --user=root \
			--auth-root-authentication-method=normal --skip-test-db >"$LOG_DIR/mariadb-install.log" 2>&1 ||
			die "mariadb-install-db failed; see $LOG_DIR/mariadb-install.log"
	fi
	local args
	mapfile -t args < <(mariadb_args)
	ensure_daemon mariadb "$(digest "${args[@]}")" start_mariadb_daemon

	local db host sql=""
	for db in keystone qinling; do
		sql+="CREATE DATABASE IF NOT EXISTS \`$db\` CHARACTER SET utf8mb4;"
		for host in 127.0.0.1 localhost; do
			sql+="CREATE USER IF NOT EXISTS '$db'@'$host' IDENTIFIED BY '$DATABASE_PASSWORD';"
			sql+="ALTER USER '$db'@'$host' IDENTIFIED BY '$DATABASE_PASSWORD';"
			sql+="GRANT ALL PRIVILEGES ON \`$db\`.* TO '$db'@'$host';"
		done
	done
	mysql_root "$sql" || die "mariadb: creating the keystone and qinling databases failed"
	log "mariadb: databases keystone and qinling, users keystone and qinling"
}

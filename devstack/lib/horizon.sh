# shellcheck shell=bash
# devstack/lib/horizon.sh: Debian's Horizon (openstack-dashboard) with this
# repository's qinling_dashboard plugin, served by uwsgi on
# SERVICE_HOST:HORIZON_PORT against the stack's Keystone.
#
# Nothing under /etc or the Horizon package is changed: a private settings
# module in STACK_DIR/etc/horizon imports Debian's settings, points them at
# this stack and adds the plugin's enabled/ files to the ones Horizon reads
# (the same files an operator copies into openstack_dashboard/local/enabled,
# docs/dashboard.md).

HORIZON_PACKAGES=(openstack-dashboard uwsgi uwsgi-plugin-python3)

horizon_paths() {
	HORIZON_ETC=$ETC_DIR/horizon
	HORIZON_URL=http://$SERVICE_HOST:$HORIZON_PORT/
}

horizon_config() {
	mkdir -p "$HORIZON_ETC" "$DATA_DIR/horizon"
	# Sessions live in signed cookies: uwsgi's processes share no cache.
	[[ -s $HORIZON_ETC/secret_key ]] || head -c 48 /dev/urandom | base64 | tr -d '\n' | write_file "$HORIZON_ETC/secret_key" 0600
	write_file "$HORIZON_ETC/qinling_stack_settings.py" 0600 <<-EOF
		# Written by devstack/stack.sh: Debian's Horizon settings, then this
		# stack's Keystone, and the qinling_dashboard plugin enabled.
		import os

		# Horizon reads the enabled files of openstack_dashboard.local.enabled;
		# the plugin's folder joins that package's path before the settings
		# import reads it.
		from openstack_dashboard.local import enabled as _local_enabled
		import qinling_dashboard.enabled as _qinling_enabled

		_local_enabled.__path__.append(_qinling_enabled.__path__[0])

		from openstack_dashboard.settings import *  # noqa: E402,F401,F403

		with open(os.path.join(os.path.dirname(__file__), 'secret_key')) as _f:
		    SECRET_KEY = _f.read().strip()
		DEBUG = False
		ALLOWED_HOSTS = ['$SERVICE_HOST', 'localhost']
		OPENSTACK_HOST = '$SERVICE_HOST'
		OPENSTACK_KEYSTONE_URL = '$KEYSTONE_URL'
		OPENSTACK_KEYSTONE_DEFAULT_ROLE = 'member'
		SESSION_ENGINE = 'django.contrib.sessions.backends.signed_cookies'
		SESSION_TIMEOUT = $KEYSTONE_TOKEN_EXPIRATION
		# This cloud has no compute: users land on their functions.
		HORIZON_CONFIG['user_home'] = WEBROOT + 'project/functions/'
		# qinling_dashboard/local_settings.d/_1800_qinling_settings.py, as
		# Horizon would exec it from its local_settings.d.
		exec(open(os.path.join(os.path.dirname(_qinling_enabled.__file__), '..',
		                       'local_settings.d', '_1800_qinling_settings.py')).read())
	EOF
	write_file "$HORIZON_ETC/wsgi.py" 0644 <<-'EOF'
		# Written by devstack/stack.sh: Horizon with qinling_stack_settings.
		import os

		os.environ['DJANGO_SETTINGS_MODULE'] = 'qinling_stack_settings'

		from django.core.wsgi import get_wsgi_application  # noqa: E402

		application = get_wsgi_application()
	EOF
}

horizon_uwsgi_args() {
	printf '%s\n' /usr/bin/uwsgi --plugins python3 \
		--http11-socket "$SERVICE_HOST:$HORIZON_PORT" \
		--wsgi-file "$HORIZON_ETC/wsgi.py" \
		--pythonpath "$HORIZON_ETC" --pythonpath "$QINLING_REPO" \
		--static-map "/static=/var/lib/openstack-dashboard/static" \
		--master --die-on-term --no-orphans --lazy-apps --enable-threads \
		--processes "$HORIZON_PROCESSES" --threads 4 \
		--buffer-size 65535 --listen 100 --harakiri 600 \
		--procname-prefix-spaced horizon --chdir "$DATA_DIR/horizon"
}

start_horizon_daemon() {
	local args
	mapfile -t args < <(horizon_uwsgi_args)
	require_port_free horizon "$HORIZON_PORT" HORIZON_PORT
	start_daemon horizon "${args[@]}"
	wait_until horizon "$SERVICE_TIMEOUT" http_ok "${HORIZON_URL}auth/login/"
	log "horizon: ready at $HORIZON_URL"
}

stack_horizon() {
	horizon_paths
	horizon_config
	# The plugin is read from the tree: a changed source file restarts it.
	local args
	mapfile -t args < <(horizon_uwsgi_args)
	ensure_daemon horizon "$(digest "$HORIZON_ETC/qinling_stack_settings.py" "${args[@]}" \
		"$(cd "$QINLING_REPO" && find qinling_dashboard -type f ! -name '*.pyc' -print0 | sort -z | xargs -0 cat | sha256sum)")" \
		start_horizon_daemon
}

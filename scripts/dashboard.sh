# shellcheck shell=bash
# The dashboard envs: dashboard-unit, qinling_dashboard's unit tests
# (Horizon's test helpers, API calls mocked; no stack), and dashboard, the
# browser suite in headless Chromium against the devstack stack's dashboard.
# Sourced by ./tox after lib.sh and test.sh.
#
# Both are in the default order; dashboard runs on the stack after
# `devstack` (whose default services include horizon) and before chaos,
# which kills and restarts daemons: ./tox -e devstack,dashboard,unstack.

DASHBOARD_PACKAGES=(openstack-dashboard chromium chromium-driver python3-selenium python3-pyflakes curl)

register_env dashboard-unit "qinling_dashboard: pyflakes and the unit tests with Horizon's helpers (API calls mocked; no stack needed)"
env_dashboard_unit() {
	ensure_packages "${DASHBOARD_PACKAGES[@]}" || return
	local rc=0 files
	log "qinling_dashboard: pyflakes"
	# The settings files star-import Horizon's settings by design.
	mapfile -t files < <(find qinling_dashboard tests/dashboard -name '*.py' \
		! -path '*/tests/settings.py' ! -path '*/local_settings.d/*')
	/usr/bin/python3 -m pyflakes "${files[@]}" || rc=1
	log "qinling_dashboard: unit tests (manage.py test)"
	PYTHONPATH=$ROOT /usr/bin/python3 /usr/share/openstack-dashboard/manage.py test \
		qinling_dashboard --settings=qinling_dashboard.tests.settings || rc=1
	return $rc
}

register_env dashboard "tests/dashboard in headless Chromium against the devstack stack (run devstack first); screenshots in DASHBOARD_SCREENSHOTS"
env_dashboard() {
	ensure_packages "${DASHBOARD_PACKAGES[@]}" || return
	local rc=0
	log "tests/dashboard: pyflakes"
	/usr/bin/python3 -m pyflakes tests/dashboard || rc=1
	local shots=${DASHBOARD_SCREENSHOTS:-$ROOT/.tox/dashboard-screenshots}
	rm -rf -- "$shots"
	mkdir -p "$shots"
	log "tests/dashboard: the browser suite (screenshots in $shots)"
	QINLING_DASHBOARD_SCREENSHOTS=$shots /usr/bin/python3 -m unittest -v tests/dashboard/test_browser.py || rc=1
	return $rc
}

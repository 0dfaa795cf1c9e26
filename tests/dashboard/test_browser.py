"""The dashboard end to end: a real headless Chromium (Debian's chromium,
chromium-driver, python3-selenium) clicks through qinling_dashboard on the
devstack stack, as demo, alt_demo and admin.

Run by `./tox -e dashboard` after `devstack` (scripts/dashboard.sh); reads
the stack from $STACK_DIR/stack.env. The steps depend on each other and run
in their names' order; a screenshot of every page visited is written to
$QINLING_DASHBOARD_SCREENSHOTS.

Waits are for a page's state (an element, a text), bounded by WAIT so a
broken page fails instead of hanging; nothing is timed.
"""

import io
import json
import os
import re
import subprocess
import sys
import tempfile
import unittest
import uuid
import zipfile

from selenium import webdriver
from selenium.common import exceptions as sel_exceptions
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

# Upper bound of any one wait: the machine may be busy, and a sync run may
# start a worker first.
WAIT = int(os.environ.get('QINLING_DASHBOARD_WAIT', '180'))

HELLO = b'''def main(name="World", **kwargs):
    print("log line from hello")
    return "Hello, %s" % name
'''


IDENTITY_503 = 'Identity service unavailable'

# What Horizon's server-error page (openstack_dashboard/templates/500.html)
# and Django's own say: no page of the suite may be one.
ERROR_PAGE = ('Something went wrong!', 'Server Error (500)', 'Traceback')


def stack_env():
    path = os.path.join(os.environ.get('STACK_DIR', '/opt/qinling-stack'),
                        'stack.env')
    env = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith('#') and '=' in line:
                key, value = line.split('=', 1)
                env[key] = value.strip('"')
    return env


class DashboardTest(unittest.TestCase):
    """One scenario in ordered steps; state passes through the class."""

    @classmethod
    def setUpClass(cls):
        cls.env = stack_env()
        if not cls.env.get('HORIZON_URL'):
            raise unittest.SkipTest('the stack has no horizon service')
        cls.url = cls.env['HORIZON_URL'].rstrip('/')
        cls.shots = os.environ.get('QINLING_DASHBOARD_SCREENSHOTS') or \
            tempfile.mkdtemp(prefix='qinling-dashboard-')
        os.makedirs(cls.shots, exist_ok=True)
        cls.shot_n = 0
        cls.tag = uuid.uuid4().hex[:6]
        cls.work = tempfile.mkdtemp(prefix='qinling-dashboard-code-')
        opts = webdriver.ChromeOptions()
        for arg in ('--headless=new', '--no-sandbox',
                    '--disable-dev-shm-usage', '--window-size=1400,1100'):
            opts.add_argument(arg)
        opts.binary_location = '/usr/bin/chromium'
        cls.driver = webdriver.Chrome(
            service=Service('/usr/bin/chromedriver'), options=opts)
        cls.state = {}

    @classmethod
    def tearDownClass(cls):
        cls.driver.quit()

    # ------------------------------------------------------------ helpers

    def shot(self, name):
        type(self).shot_n += 1
        self.driver.save_screenshot(os.path.join(
            self.shots, '%02d-%s.png' % (self.shot_n, name)))
        page = self.driver.page_source
        for marker in ERROR_PAGE:
            self.assertNotIn(marker, page, 'an error page at ' + name)

    def wait(self, condition, what):
        try:
            # Horizon replaces polled rows and reloaded pages under a
            # condition's feet: a stale element means "look again".
            return WebDriverWait(
                self.driver, WAIT, poll_frequency=0.5,
                ignored_exceptions=(
                    sel_exceptions.NoSuchElementException,
                    sel_exceptions.StaleElementReferenceException),
            ).until(condition)
        except sel_exceptions.TimeoutException:
            self.shot('timeout')
            self.fail('gave up waiting for %s on %s' %
                      (what, self.driver.current_url))

    def find(self, css):
        return self.wait(EC.visibility_of_element_located(
            (By.CSS_SELECTOR, css)), css)

    def get(self, path, name):
        self.driver.get(self.url + path)
        self.find('#content_body')
        self.shot(name)

    def login(self, user):
        name = self.env[user.upper() + '_USER']

        # Sessions live in signed cookies, which every answer sets again. The
        # previous user's session cookie has been seen coming back after
        # every cookie was cleared, on the way to the login page (an answer
        # to a request the last page had sent); signing in with it present
        # keeps the previous user (CI: test_13 signed in as admin and went on
        # as demo). So the last page is left first, and the login counts
        # only once a page of ours names the user; otherwise, again.
        #
        # The function service checks a new token with Keystone once, then
        # caches the answer. On a loaded machine Keystone can take longer
        # than the service waits for it, and the page shows the service's
        # 503 "Identity service unavailable": a state of the stack, not of
        # the dashboard. Steps start once a page of ours loads without it.
        def signed_in(d):
            d.get('about:blank')
            # Every domain's cookies: delete_all_cookies would clear only
            # those of the page shown, and about:blank has none.
            d.execute_cdp_cmd('Network.clearBrowserCookies', {})
            d.get(self.url + '/auth/login/')
            if not d.find_elements(By.ID, 'id_username'):
                return False
            self.find('#id_username').send_keys(name)
            d.find_element(By.ID, 'id_password').send_keys(
                self.env[user.upper() + '_PASSWORD'])
            d.find_element(By.ID, 'loginBtn').click()
            self.wait(lambda d: '/auth/login' not in d.current_url,
                      'the login of ' + user)
            d.get(self.url + '/project/functions/')
            self.find('#content_body')
            shown = [e.text.strip() for e in d.find_elements(
                By.CSS_SELECTOR, '.user-menu .user-name')]
            if shown != [name]:
                print('login of %s: the page names %s; signing in again' %
                      (user, shown), file=sys.stderr)
                return False
            return IDENTITY_503 not in d.page_source
        self.wait(signed_in, 'the function service to show the pages of ' +
                  user)

    def open_modal(self, button_id):
        self.find('#' + button_id).click()
        return self.find('.modal form')

    def set_field(self, name, value):
        """Any field: text, select (themable selects hide the native one),
        checkbox, file."""
        el = self.find_in_modal('#id_' + name)
        kind = el.get_attribute('type')
        if el.tag_name == 'select':
            self.driver.execute_script(
                'arguments[0].value = arguments[1];'
                '$(arguments[0]).trigger("change");', el, value)
        elif kind == 'checkbox':
            if el.is_selected() != bool(value):
                self.driver.execute_script('arguments[0].click();', el)
        elif kind == 'file':
            el.send_keys(value)
        else:
            el.clear()
            el.send_keys(value)

    def find_in_modal(self, css):
        return self.wait(EC.presence_of_element_located(
            (By.CSS_SELECTOR, '.modal ' + css)), css)

    def submit(self, name):
        self.shot(name + '-form')
        self.find_in_modal('.modal-footer [type=submit]').click()

    def submit_ok(self, name):
        """Submit; the modal closes and Horizon shows a success."""
        self.submit(name)
        self.wait(lambda d: not d.find_elements(By.CSS_SELECTOR,
                                                '.modal form'),
                  'the form %s to close' % name)
        self.find('#content_body')
        self.shot(name + '-done')

    def submit_fails(self, name, text):
        """Submit; the modal stays, showing text (the server's message or
        the field's error)."""
        self.submit(name)
        self.wait(lambda d: any(
            text.lower() in e.text.lower() for e in d.find_elements(
                By.CSS_SELECTOR, '.modal .alert-danger, .modal .help-block,'
                ' .modal .error')), 'the error %r in %s' % (text, name))
        self.shot(name + '-error')
        self.find_in_modal('.modal-header .close').click()
        self.wait(lambda d: not d.find_elements(By.CSS_SELECTOR,
                                                '.modal form'),
                  'the form %s to close' % name)

    def row_of(self, table, text):
        """The id of the row of table whose text holds text. Read inside
        the wait: a polled row is replaced under our feet."""
        def found(d):
            for r in d.find_elements(
                    By.CSS_SELECTOR, '#%s tbody tr[data-object-id]' % table):
                if text in r.text:
                    return r.get_attribute('data-object-id')
        return self.wait(found, 'a row with %r in %s' % (text, table))

    def row_action(self, table, object_id, name):
        action = '%s__row_%s__action_%s' % (table, object_id, name)
        # Present, not visible: all but a row's first action sit in its
        # closed action menu.
        btn = self.wait(EC.presence_of_element_located((By.ID, action)),
                        'the %s action of %s' % (name, object_id))
        if not btn.is_displayed():
            self.find('#%s__row__%s .dropdown-toggle' %
                      (table, object_id)).click()
            btn = self.find('#' + action)
        btn.click()

    def delete_row(self, table, object_id, name):
        self.row_action(table, object_id, 'delete')
        self.find('.modal-footer .btn-danger').click()
        self.wait(lambda d: not d.find_elements(
            By.ID, '%s__row__%s' % (table, object_id)),
            'row %s to go from %s' % (object_id, table))
        self.shot(name)

    def need(self, *keys):
        """Skip this step when an earlier one failed before making what it
        needs (that failure is the one to read)."""
        missing = [k for k in keys if k not in self.state]
        if missing:
            self.skipTest('an earlier step did not make %s' %
                          ', '.join(missing))

    def file(self, name, content):
        path = os.path.join(self.work, name)
        with open(path, 'wb') as f:
            f.write(content)
        return path

    # -------------------------------------------------------------- steps

    def test_01_admin_creates_runtimes(self):
        self.login('admin')
        self.get('/admin/runtimes/', 'admin-runtimes')
        self.open_modal('runtimes__action_create')
        self.submit_fails('runtime-no-image', 'Required param is missing')
        for key, image in (('runtime', 'python3'),
                           ('broken_runtime', 'no-such-image')):
            name = 'e2e-%s-%s' % (key, self.tag)
            self.open_modal('runtimes__action_create')
            self.set_field('image', image)
            self.set_field('name', name)
            self.submit_ok('runtime-create-' + key)
            self.state[key] = self.row_of('runtimes', name)
        rid = self.state['runtime']
        self.wait(lambda d: 'Available' in d.find_element(
            By.ID, 'runtimes__row__' + rid).text, 'the runtime to be up')
        self.wait(lambda d: 'Error' in d.find_element(
            By.ID, 'runtimes__row__' + self.state['broken_runtime']).text,
            'the broken runtime to fail')
        self.shot('admin-runtimes-ready')
        # Admins read the pool; members (step 2) may not.
        self.wait(lambda d: 'free of' in d.find_element(
            By.ID, 'runtimes__row__' + rid).text, "the runtime's pool")
        # A new image for a runtime in error: the API refuses (409).
        self.row_action('runtimes', self.state['broken_runtime'], 'update')
        self.find('.modal form')
        self.set_field('image', 'python3')
        self.submit_fails('runtime-update-unavailable', 'not available')

    def test_02_member_sees_runtimes_but_no_admin_actions(self):
        self.need('runtime', 'broken_runtime')
        d = self.driver
        self.login('demo')
        self.get('/project/runtimes/', 'demo-runtimes')
        # The list with each runtime's status; no pool (the API keeps
        # pools for admins), no admin action, no admin panel.
        for key, status in (('runtime', 'Available'),
                            ('broken_runtime', 'Error')):
            self.assertIn(status, self.find(
                '#runtimes__row__' + self.state[key]).text)
        headers = [h.text for h in d.find_elements(
            By.CSS_SELECTOR, '#runtimes thead th')]
        self.assertIn('Status', headers)
        self.assertNotIn('Pool', headers)
        self.assertFalse(d.find_elements(
            By.CSS_SELECTOR, '#runtimes [id*="__action_"]'))
        self.assertFalse(d.find_elements(
            By.CSS_SELECTOR, 'a[href*="/admin/"]'))
        d.get(self.url + '/admin/runtimes/')
        self.shot('demo-admin-runtimes')
        self.assertIn('not authorized', d.page_source)
        self.assertFalse(d.find_elements(By.ID, 'runtimes__action_create'))

    def create_function(self, name, source, path, entry=None, **extra):
        self.open_modal('functions__action_create')
        self.set_field('name', name)
        self.set_field('source', source)
        if path:
            self.set_field('code_file', path)
        self.set_field('runtime_id', extra.pop('runtime', None) or
                       self.state['runtime'])
        if entry:
            self.set_field('entry', entry)
        for key, value in extra.items():
            self.set_field(key, value)

    def test_03_create_function_from_a_file(self):
        self.need('runtime', 'broken_runtime')
        self.get('/project/functions/', 'functions')
        hello = self.file('hello.py', HELLO)
        self.create_function('e2e-nofile', 'file', None)
        self.submit_fails('function-no-file', 'Choose a file to upload')
        self.create_function('e2e-memory', 'file', hello,
                             memory_size='1')
        self.submit_fails('function-memory', 'memory')
        self.create_function('e2e-broken', 'file', hello,
                             runtime=self.state['broken_runtime'])
        self.submit_fails('function-runtime-unavailable', 'not available')
        name = 'e2e-file-' + self.tag
        self.create_function(name, 'file', hello)
        self.submit_ok('function-from-file')
        self.state['file_fn'] = fid = self.row_of('functions', name)
        self.row_action('functions', fid, 'update')
        self.find('.modal form')
        self.set_field('memory_size', '1')
        self.submit_fails('function-edit-memory', 'memory')

    def test_04_create_function_from_a_zip(self):
        self.need('runtime')
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, 'w') as zf:
            zf.writestr('pkg/__init__.py', '')
            zf.writestr('pkg/hello.py', HELLO)
        path = self.file('hello.zip', buf.getvalue())
        name = 'e2e-zip-' + self.tag
        self.create_function(name, 'package', path, entry='pkg.hello.main')
        self.submit_ok('function-from-zip')
        self.state['zip_fn'] = self.row_of('functions', name)

    def test_05_run_sync_and_read_output_and_log(self):
        self.need('file_fn', 'zip_fn')
        fid = self.state['file_fn']
        self.get('/project/executions/', 'executions')
        self.open_modal('executions__action_create')
        self.set_field('function_id', fid)
        self.set_field('input', '{"name": ')
        self.submit_fails('run-bad-json', 'not valid JSON')
        for key in ('file_fn', 'zip_fn'):
            self.get('/project/executions/', 'executions')
            self.open_modal('executions__action_create')
            self.set_field('function_id', self.state[key])
            self.set_field('input', json.dumps({'name': 'Qinling'}))
            self.submit('run-sync-' + key)
            out = self.find('.execution-output')
            self.shot('execution-sync-' + key)
            self.assertIn('Hello, Qinling', out.text)
            self.assertIn('log line from hello',
                          self.find('.execution-log').text)
            self.assertIn('success', self.find('.execution-status').text)

    def test_06_run_async_and_watch_it_finish(self):
        self.need('file_fn')
        self.get('/project/executions/', 'executions')
        self.open_modal('executions__action_create')
        self.set_field('function_id', self.state['file_fn'])
        self.set_field('sync', False)
        self.submit('run-async')

        def started(d):
            for m in d.find_elements(By.CSS_SELECTOR, '.messages .alert'):
                found = re.search(r'Execution (\S+) started', m.text)
                if found:
                    return found.group(1)
        eid = self.wait(started, 'the message of the started execution')
        self.state['async'] = eid
        # Newest first: the run just started is the first row of the first
        # page, however many executions the project has.
        row = '#executions__row__' + eid
        self.find(row)
        self.assertEqual(self.execution_rows()[:1], [eid])
        self.shot('execution-async-listed')
        # No reload: Horizon's row polling brings the end.
        self.wait(lambda d: 'Success' in d.find_element(
            By.CSS_SELECTOR, row).text, 'the async run to succeed')
        self.shot('execution-async-finished')

    def test_07_executions_page_newest_first(self):
        """Two rows a page (the user's setting): the first page holds the
        newest, Next the older ones, Prev the first page again."""
        self.need('async')
        self.set_page_size(2)
        try:
            self.get('/project/executions/', 'executions-page-1')
            first = self.execution_rows()
            self.assertEqual(len(first), 2)
            self.assertEqual(first[0], self.state['async'])
            self.find('#executions a[href*="marker="]').click()
            self.wait(lambda d: 'prev_marker' in d.page_source and
                      self.execution_rows() and
                      self.execution_rows()[0] not in first,
                      'the second page')
            self.shot('executions-page-2')
            second = self.execution_rows()
            self.assertFalse(set(first) & set(second))
            self.find('#executions a[href*="prev_marker="]').click()
            self.wait(lambda d: self.execution_rows() == first,
                      'the first page again')
            self.shot('executions-page-1-again')
        finally:
            self.set_page_size(20)

    def set_page_size(self, n):
        self.get('/settings/', 'settings')
        field = self.find('#id_pagesize')
        field.clear()
        field.send_keys(str(n))
        self.find('#user_settings_modal [type=submit]').click()
        self.find('.messages .alert-success')
        self.assertEqual(self.find('#id_pagesize').get_attribute('value'),
                         str(n))

    def execution_rows(self):
        # One script reads them all at once: polled rows cannot go stale
        # between finding a row and reading its id.
        return self.driver.execute_script(
            'return Array.from(document.querySelectorAll('
            '"#executions tbody tr[data-object-id]"))'
            '.map(function (r) { return r.dataset.objectId; });')

    def test_08_version_alias_and_webhook(self):
        self.need('file_fn')
        fid = self.state['file_fn']
        base = '/project/functions/%s/' % fid
        self.get(base + '?tab=function_details__versions', 'versions')
        self.open_modal('versions__action_create_version')
        self.set_field('description', 'e2e')
        self.submit_ok('version-create')
        self.state['version'] = self.row_of('versions', 'e2e')
        self.open_modal('versions__action_create_version')
        self.submit_fails('version-unchanged', 'not changed')

        alias = 'e2e-alias-' + self.tag
        self.get(base + '?tab=function_details__aliases', 'aliases')
        self.open_modal('aliases__action_create_alias')
        self.set_field('name', alias)
        self.set_field('function_version', '1')
        self.submit_ok('alias-create')
        self.row_of('aliases', alias)
        self.state['alias'] = alias
        self.open_modal('aliases__action_create_alias')
        self.set_field('name', alias)
        self.submit_fails('alias-exists', 'already exists')

        self.get(base + '?tab=function_details__webhooks', 'webhooks')
        # The form's function, deleted meanwhile or never the project's
        # (its hidden field changed): the API's 404 is the form's message.
        self.open_modal('webhooks__action_create_webhook')
        self.driver.execute_script(
            'arguments[0].value = arguments[1];',
            self.find_in_modal('#id_function_id'), str(uuid.uuid4()))
        self.submit_fails('webhook-no-function', 'not found')
        self.open_modal('webhooks__action_create_webhook')
        self.set_field('function_alias', alias)
        self.submit_ok('webhook-create')
        url = self.find('#webhooks input.webhook-url').get_attribute('value')
        self.state['webhook'] = self.row_of('webhooks', '')

        self.get(base + '?tab=function_details__executions', 'fn-executions')
        before = self.execution_ids()
        subprocess.run(['curl', '-sf', '-X', 'POST', '-H',
                        'Content-Type: application/json', '-d',
                        '{"name": "webhook"}', url], check=True,
                       stdout=subprocess.DEVNULL, timeout=WAIT)

        def appeared(d):
            d.refresh()
            return self.execution_ids() - before
        self.wait(appeared, 'the webhook execution on the function page')
        self.shot('webhook-execution')

    def execution_ids(self):
        self.find('#executions')
        return set(self.execution_rows())

    def test_09_job(self):
        self.need('file_fn')
        self.get('/project/jobs/', 'jobs')
        self.open_modal('jobs__action_create')
        self.set_field('function_id', self.state['file_fn'])
        self.set_field('pattern', 'not a pattern')
        self.submit_fails('job-bad-pattern', 'pattern')
        name = 'e2e-job-' + self.tag
        self.open_modal('jobs__action_create')
        self.set_field('name', name)
        self.set_field('function_id', self.state['file_fn'])
        self.set_field('pattern', '0 0 1 1 *')
        self.set_field('count', '2')
        self.submit_ok('job-create')
        self.state['job'] = jid = self.row_of('jobs', name)
        row = self.find('#jobs__row__' + jid).text
        self.assertIn('0 0 1 1 *', row)
        self.assertRegex(row, r'20\d\d-01-01')

    def test_10_usage(self):
        """The project's usage this month counts the runs above."""
        self.need('file_fn')
        self.get('/project/function_usage/', 'usage')
        self.assertGreaterEqual(
            int(self.find('#usage_totals .usage-executions').text), 4)
        self.assertGreater(
            float(self.find('#usage_totals .usage-gb-seconds').text), 0)
        row = self.find('#function_usage__row__' + self.state['file_fn'])
        self.assertIn('e2e-file-' + self.tag, row.text)
        # A period that ends before it starts is the form's message.
        self.get('/project/function_usage/?start=2026-12-07&end=2026-12-01',
                 'usage-bad-period')
        self.assertIn('end comes before the start',
                      self.find('#usage_period').text)

    def test_11_another_projects_function_is_not_found(self):
        self.need('file_fn')
        self.login('alt_demo')
        self.driver.get(self.url + '/project/functions/%s/' %
                        self.state['file_fn'])
        self.shot('alt-demo-not-found')
        page = self.driver.title + self.driver.find_element(
            By.TAG_NAME, 'body').text
        self.assertIn('Not Found', page)
        self.assertNotIn('e2e-file', self.driver.page_source)

    def test_12_delete_everything(self):
        """What the steps made, in the order the API allows; a step that
        failed made less, and the rest is still deleted."""
        self.login('demo')
        if 'job' in self.state:
            self.get('/project/jobs/', 'jobs')
            self.delete_row('jobs', self.state['job'], 'job-deleted')
        base = '/project/functions/%s/?tab=function_details__' % \
            self.state.get('file_fn')
        for table, key in (('webhooks', 'webhook'), ('aliases', 'alias'),
                           ('versions', 'version')):
            if key in self.state:
                self.get(base + table, table)
                self.delete_row(table, self.state[key], key + '-deleted')
        self.get('/project/functions/', 'functions')
        for key in ('file_fn', 'zip_fn'):
            if key in self.state:
                self.delete_row('functions', self.state[key],
                                key + '-deleted')

    def test_13_admin_deletes_the_runtimes(self):
        self.login('admin')
        self.get('/admin/runtimes/', 'admin-runtimes')
        for key in ('runtime', 'broken_runtime'):
            if key in self.state:
                self.delete_row('runtimes', self.state[key], key + '-deleted')


if __name__ == '__main__':
    unittest.main()

from django.test.utils import override_settings
from django.urls import reverse

from qinling_dashboard.api import qinling as api
from qinling_dashboard.content.admin_runtimes import tables as admin_tables
from qinling_dashboard import exceptions
from qinling_dashboard.tests import helpers

FID = '0b8a4ce6-7a6c-4c9a-8a4e-1d6f0d8e5a01'
RID = '5a2c3c87-2d7d-4d51-9b0e-9d6f36e70f02'
POLICY = 'openstack_auth.policy.check'


class JobTests(helpers.TestCase):
    @helpers.create_mocks({api: ('function_list', 'alias_list',
                                 'job_create')})
    def test_a_bad_cron_pattern_shows_the_servers_message(self):
        self.mock_function_list.return_value = [
            api.Function({'id': FID, 'name': 'hello'})]
        self.mock_alias_list.return_value = []
        fault = 'The execution pattern is not valid.'
        self.mock_job_create.side_effect = exceptions.from_status(400, fault)
        res = self.client.post(reverse('horizon:project:jobs:create'), {
            'function_id': FID, 'function_version': '0', 'pattern': 'nope',
            'count': '2'})
        self.assertContains(res, fault)
        self.assertEqual(self.mock_job_create.call_args[1]['pattern'],
                         'nope')


class RuntimePolicyTests(helpers.TestCase):
    @override_settings(POLICY_CHECK_FUNCTION=POLICY)
    @helpers.create_mocks({api: ('runtime_page',)})
    def test_members_see_runtimes_without_pools(self):
        self.mock_runtime_page.return_value = ([api.Runtime({
            'id': RID, 'name': 'python3', 'image': 'img',
            'status': 'available'})], False)
        res = self.client.get(reverse('horizon:project:runtimes:index'))
        self.assertContains(res, 'python3')
        self.assertContains(res, 'Available')
        # The API lets only admins read a pool: no column of dashes.
        self.assertNotContains(res, 'Prewarmed workers')

    @override_settings(POLICY_CHECK_FUNCTION=POLICY)
    def test_members_are_not_offered_admin_actions(self):
        table = admin_tables.AdminRuntimesTable(self.request)
        names = [a.name for a in table.get_table_actions()]
        self.assertNotIn('create', names)


class AdminRuntimeTests(helpers.BaseAdminViewTests):
    @override_settings(POLICY_CHECK_FUNCTION=POLICY)
    @helpers.create_mocks({api: ('runtime_page', 'runtime_pool')})
    def test_admins_see_pools_and_actions(self):
        self.mock_runtime_page.return_value = ([api.Runtime({
            'id': RID, 'name': 'python3', 'image': 'img',
            'status': 'available'})], False)
        self.mock_runtime_pool.return_value = {
            'name': RID, 'capacity': {'total': 3, 'available': 2}}
        res = self.client.get(reverse('horizon:admin:runtimes:index'))
        self.assertContains(res, '2 free of 3')
        self.assertContains(res, 'Prewarmed workers')
        self.assertContains(res, 'Create Runtime')

    @helpers.create_mocks({api: ('runtime_create',)})
    def test_a_missing_image_shows_the_servers_message(self):
        fault = "Required param is missing. Required: {'image'}"
        self.mock_runtime_create.side_effect = exceptions.from_status(
            400, fault)
        res = self.client.post(reverse('horizon:admin:runtimes:create'), {
            'image': '', 'is_public': 'on', 'trusted': 'on'})
        self.assertContains(res, 'Required param is missing.')

    @helpers.create_mocks({api: ('runtime_get', 'runtime_update')})
    def test_update_sends_only_what_changed(self):
        # A runtime in error: the engine's reason is its description,
        # longer than an admin may type.
        reason = 'Runtime pool failed: ' + 'x' * 400
        self.mock_runtime_get.return_value = api.Runtime({
            'id': RID, 'name': 'broken', 'image': 'no-such-image',
            'status': 'error', 'description': reason})
        self.mock_runtime_update.return_value = api.Runtime({
            'id': RID, 'name': 'broken'})
        res = self.client.post(
            reverse('horizon:admin:runtimes:update', args=[RID]),
            {'runtime_id': RID, 'name': 'broken', 'description': reason,
             'image': 'python3'})
        self.assertNoFormErrors(res)
        self.mock_runtime_update.assert_called_once_with(
            helpers.IsHttpRequest(), RID, image='python3')

"""Horizon's TestCase with the function-engine service in the test user's
catalog (the panels require it)."""

from openstack_dashboard.test import helpers

from qinling_dashboard.api import qinling as api
from qinling_dashboard import exceptions

create_mocks = helpers.create_mocks
IsHttpRequest = helpers.IsHttpRequest

ENDPOINT = 'http://qinling.example.com:7070'


class TestCase(helpers.TestCase):
    def _setup_test_data(self):
        super()._setup_test_data()
        self.service_catalog.append({
            'type': api.SERVICE_TYPE,
            'name': 'qinling',
            'endpoints_links': [],
            'endpoints': [
                {'region': 'RegionOne', 'interface': interface,
                 'url': ENDPOINT}
                for interface in ('admin', 'public', 'internal')],
        })


    def assert_api_error_is_a_message(self, mocked, url):
        """mocked (an API call of the page at url) fails: the page is
        Horizon's, with the error as a message, never a 500."""
        mocked.side_effect = exceptions.QinlingRecoverable(
            503, 'The function service cannot be reached.')
        res = self.client.get(url)
        self.assertEqual(res.status_code, 200)
        self.assertMessageCount(res, error=1)


class BaseAdminViewTests(TestCase, helpers.BaseAdminViewTests):
    """The same, with the "admin" role."""

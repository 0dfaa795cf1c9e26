"""Horizon's TestCase with the function-engine service in the test user's
catalog (the panels require it)."""

from openstack_dashboard.test import helpers

from qinling_dashboard.api import qinling as api

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


class BaseAdminViewTests(TestCase, helpers.BaseAdminViewTests):
    """The same, with the "admin" role."""

import datetime

from django.urls import reverse

from qinling_dashboard.api import qinling as api
from qinling_dashboard.content.usage import views as usage_views
from qinling_dashboard.tests import helpers

INDEX_URL = reverse('horizon:project:function_usage:index')
FID = '0b8a4ce6-7a6c-4c9a-8a4e-1d6f0d8e5a01'
GONE = '7e1f3a5c-9b2d-4f6e-8a0c-2e4f6a8c0e05'
USAGE = {
    'project_id': 'p', 'start': '2026-12-01T00:00:00',
    'end': '2026-12-08T00:00:00', 'total_executions': 5,
    'total_succeeded': 4, 'total_failed': 1, 'total_duration': 1.25,
    'total_cpu_time': 0.5, 'total_gb_seconds': 0.04,
    'function_usages': [
        {'function_id': FID, 'executions': 3, 'succeeded': 3, 'failed': 0,
         'duration': 0.75, 'cpu_time': 0.25, 'gb_seconds': 0.0234375},
        {'function_id': GONE, 'executions': 2, 'succeeded': 1, 'failed': 1,
         'duration': 0.5, 'cpu_time': 0.25, 'gb_seconds': 0.015625}]}


class UsageTests(helpers.TestCase):
    @helpers.create_mocks({api: ('usage_get', 'function_list')})
    def test_totals_and_functions_over_the_period(self):
        self.mock_usage_get.return_value = USAGE
        self.mock_function_list.return_value = [
            api.Function({'id': FID, 'name': 'hello'})]
        res = self.client.get(INDEX_URL, {'start': '2026-12-01',
                                          'end': '2026-12-07'})
        self.assertTemplateUsed(res, 'qinling/usage/index.html')
        # The last day is whole: the API's period ends the day after.
        self.mock_usage_get.assert_called_once_with(
            helpers.IsHttpRequest(), '2026-12-01', '2026-12-08')
        self.assertContains(res, '<dd class="usage-executions">5</dd>',
                            html=True)
        self.assertContains(res, '0.040000')  # the total
        self.assertContains(res, '0.015625')  # a function's
        # A function that exists is named and linked; a deleted one keeps
        # its id.
        self.assertContains(res, reverse('horizon:project:functions:detail',
                                         args=[FID]))
        self.assertContains(res, '>hello<')
        self.assertContains(res, GONE)

    @helpers.create_mocks({api: ('usage_get', 'function_list')})
    def test_the_default_period_is_this_month(self):
        self.mock_usage_get.return_value = dict(USAGE, function_usages=[])
        self.mock_function_list.return_value = []
        self.client.get(INDEX_URL)
        first, today = usage_views.default_period()
        self.assertEqual(first.day, 1)
        self.mock_usage_get.assert_called_once_with(
            helpers.IsHttpRequest(), first.isoformat(),
            (today + datetime.timedelta(days=1)).isoformat())

    @helpers.create_mocks({api: ('usage_get',)})
    def test_a_bad_period_is_a_form_error_not_a_call(self):
        for query in ({'start': 'yesterday', 'end': '2026-12-07'},
                      {'start': '2026-12-07', 'end': '2026-12-01'}):
            with self.subTest(query=query):
                res = self.client.get(INDEX_URL, query)
                self.assertEqual(res.status_code, 200)
                self.assertContains(res, 'help-block error')
        self.mock_usage_get.assert_not_called()

    @helpers.create_mocks({api: ('usage_get',)})
    def test_an_api_error_is_a_message(self):
        self.assert_api_error_is_a_message(self.mock_usage_get, INDEX_URL)

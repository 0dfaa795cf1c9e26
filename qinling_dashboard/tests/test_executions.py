import json

from django.urls import reverse

from qinling_dashboard.api import qinling as api
from qinling_dashboard import exceptions
from qinling_dashboard.tests import helpers

INDEX_URL = reverse('horizon:project:executions:index')
CREATE_URL = reverse('horizon:project:executions:create')
FID = '0b8a4ce6-7a6c-4c9a-8a4e-1d6f0d8e5a01'
EID = '9f1d0d6e-2d1e-4a4f-9a6c-4e0c9a3b6c03'

# A row horizon.tables.js polls: status unknown ("warning") and ajax-update.
POLLING_ROW = (r'<tr (?=[^>]*class="[^"]*\bwarning\b)'
               r'(?=[^>]*class="[^"]*\bajax-update\b)')


def execution(status='success', sync=True):
    result = None
    if status != 'running':
        result = json.dumps({'duration': 0.042, 'output': 'Hello, Qinling'})
    return api.Execution({'id': EID, 'function_id': FID,
                          'function_version': 0, 'function_alias': None,
                          'status': status, 'sync': sync, 'result': result,
                          'input': '{"name": "Qinling"}',
                          'created_at': '2026-01-01 00:00:00'})


class RunFunctionTests(helpers.TestCase):
    def _post(self, **fields):
        data = {'function_id': FID, 'function_version': '0',
                'function_alias': '', 'input': '', 'sync': 'on'}
        data.update(fields)
        return self.client.post(CREATE_URL, data)

    def _choices(self):
        self.mock_function_list.return_value = [
            api.Function({'id': FID, 'name': 'hello'})]
        self.mock_alias_list.return_value = []

    @helpers.create_mocks({api: ('function_list', 'alias_list',
                                 'execution_create')})
    def test_a_sync_run_opens_its_result(self):
        self._choices()
        self.mock_execution_create.return_value = execution()
        res = self._post(input='{"name": "Qinling"}')
        self.assertNoFormErrors(res)
        self.assertRedirectsNoFollow(res, reverse(
            'horizon:project:executions:detail', args=[EID]))
        self.mock_execution_create.assert_called_once_with(
            helpers.IsHttpRequest(), function_id=FID, function_version=0,
            function_alias=None, sync=True, input='{"name": "Qinling"}')

    @helpers.create_mocks({api: ('function_list', 'alias_list',
                                 'execution_create')})
    def test_an_async_run_opens_the_list(self):
        self._choices()
        self.mock_execution_create.return_value = execution('running', False)
        res = self._post(sync='')
        self.assertRedirectsNoFollow(res, INDEX_URL)

    @helpers.create_mocks({api: ('function_list', 'alias_list',
                                 'execution_create')})
    def test_bad_json_input_is_a_form_error(self):
        self._choices()
        res = self._post(input='{"name": ')
        self.assertFormErrors(res, 1)
        self.assertContains(res, 'The input is not valid JSON')
        self.mock_execution_create.assert_not_called()

    @helpers.create_mocks({api: ('function_list', 'alias_list',
                                 'execution_create')})
    def test_the_servers_faultstring_is_shown(self):
        self._choices()
        self.mock_execution_create.side_effect = exceptions.from_status(
            409, 'Runtime abc is not available.')
        res = self._post()
        self.assertContains(res, 'Runtime abc is not available.')


class ExecutionListTests(helpers.TestCase):
    @helpers.create_mocks({api: ('execution_list',)})
    def test_status_filter_goes_to_the_server(self):
        self.mock_execution_list.return_value = [execution('running')]
        res = self.client.post(INDEX_URL, {
            'executions__filter__q_field': 'status',
            'executions__filter__q': 'running'}, follow=True)
        self.assertEqual(res.status_code, 200)
        self.mock_execution_list.assert_called_once_with(
            helpers.IsHttpRequest(), status='running')
        # A running row polls until it ends (horizon.tables.js).
        self.assertRegex(res.content.decode(), POLLING_ROW)

    @helpers.create_mocks({api: ('execution_get',)})
    def test_row_update(self):
        self.mock_execution_get.return_value = execution()
        res = self.client.get(INDEX_URL, {
            'action': 'row_update', 'table': 'executions', 'obj_id': EID},
            HTTP_X_REQUESTED_WITH='XMLHttpRequest')
        self.assertContains(res, 'Success')
        self.assertNotRegex(res.content.decode(), POLLING_ROW)


class ExecutionDetailTests(helpers.TestCase):
    @helpers.create_mocks({api: ('execution_get', 'execution_log')})
    def test_result_duration_and_log(self):
        self.mock_execution_get.return_value = execution()
        self.mock_execution_log.return_value = 'Start execution\nhello log\n'
        res = self.client.get(reverse('horizon:project:executions:detail',
                                      args=[EID]))
        self.assertContains(res, 'Hello, Qinling')
        self.assertContains(res, '0.042 s')
        self.assertContains(res, 'hello log')

    @helpers.create_mocks({api: ('execution_get',)})
    def test_not_found(self):
        self.mock_execution_get.side_effect = exceptions.from_status(
            404, 'Execution not found.')
        res = self.client.get(reverse('horizon:project:executions:detail',
                                      args=[EID]))
        self.assertEqual(res.status_code, 404)

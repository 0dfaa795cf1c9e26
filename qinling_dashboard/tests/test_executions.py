import json

from django.urls import reverse

from qinling_dashboard.api import qinling as api
from qinling_dashboard import exceptions
from qinling_dashboard.tests import helpers

INDEX_URL = reverse('horizon:project:executions:index')
CREATE_URL = reverse('horizon:project:executions:create')
FID = '0b8a4ce6-7a6c-4c9a-8a4e-1d6f0d8e5a01'
EID = '9f1d0d6e-2d1e-4a4f-9a6c-4e0c9a3b6c03'
OLDER_EID = '1c3e5a7f-0b2d-4e6a-8c1f-3d5b7e9a1c04'

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
    @helpers.create_mocks({api: ('execution_page',)})
    def test_status_filter_goes_to_the_server(self):
        self.mock_execution_page.return_value = ([execution('running')],
                                                 False)
        res = self.client.post(INDEX_URL, {
            'executions__filter__q_field': 'status',
            'executions__filter__q': 'running'}, follow=True)
        self.assertEqual(res.status_code, 200)
        self.mock_execution_page.assert_called_once_with(
            helpers.IsHttpRequest(), marker=None, sort_dir='desc',
            status='running')
        # A running row polls until it ends (horizon.tables.js).
        self.assertRegex(res.content.decode(), POLLING_ROW)

    @helpers.create_mocks({api: ('execution_page',)})
    def test_pages_newest_first_with_the_apis_marker(self):
        newer = execution()
        older = api.Execution(dict(newer._apidict, id=OLDER_EID))
        cases = [
            # (query, the API's answer, the call, rows shown, prev, next)
            ({}, [newer, older], True,
             dict(marker=None, sort_dir='desc'), [EID, OLDER_EID],
             False, True),
            ({'marker': EID}, [older], False,
             dict(marker=EID, sort_dir='desc'), [OLDER_EID], True, False),
            # Back: read oldest first from the first row, then turned round.
            ({'prev_marker': OLDER_EID}, [newer], False,
             dict(marker=OLDER_EID, sort_dir='asc'), [EID], False, True),
        ]
        for query, items, more, call, rows, prev, nxt in cases:
            with self.subTest(query=query):
                self.mock_execution_page.reset_mock()
                self.mock_execution_page.return_value = (list(items), more)
                res = self.client.get(INDEX_URL, query)
                self.mock_execution_page.assert_called_once_with(
                    helpers.IsHttpRequest(), **call)
                table = res.context['table']
                self.assertEqual([table.get_object_id(d) for d in
                                  table.data], rows)
                self.assertEqual(table.has_prev_data(), prev)
                self.assertEqual(table.has_more_data(), nxt)
                if nxt:
                    # Horizon's "Next" link: the last row is the marker.
                    self.assertContains(res, 'href="?marker=%s"' % rows[-1])

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

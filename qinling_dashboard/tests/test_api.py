from unittest import mock

from openstack_auth import utils as auth_utils
import requests

from qinling_dashboard.api import qinling as api
from qinling_dashboard import exceptions
from qinling_dashboard.tests import helpers


def response(status, body, content_type='application/json'):
    resp = requests.Response()
    resp.status_code = status
    resp._content = body.encode()
    resp.headers['Content-Type'] = content_type
    return resp


class APITests(helpers.TestCase):
    def setUp(self):
        super().setUp()
        # The logged-in user Horizon's test case sets up, with its token
        # and catalog.
        self.request.user = auth_utils.get_user(self.request)

    @mock.patch.object(requests, 'request')
    def test_calls_the_catalog_endpoint_with_the_users_token(self, request):
        request.return_value = response(200, '{"functions": []}')
        self.assertEqual(api.function_list(self.request), [])
        args, kwargs = request.call_args
        self.assertEqual(args, ('GET', helpers.ENDPOINT + '/v1/functions'))
        self.assertEqual(kwargs['headers']['X-Auth-Token'], self.token.id)

    @mock.patch.object(requests, 'request')
    def test_a_page_is_newest_first_with_the_users_page_size(self, request):
        request.return_value = response(
            200, '{"executions": [{"id": "b"}], "next": "http://x"}')
        items, more = api.execution_page(self.request, marker='a',
                                         status='running', function_id='')
        self.assertEqual(([e.id for e in items], more), (['b'], True))
        self.assertEqual(request.call_args[1]['params'], {
            'status': 'running', 'sort_dir': 'desc', 'limit': 20,
            'marker': 'a'})

    @mock.patch.object(requests, 'request')
    def test_a_whole_list_follows_the_pages(self, request):
        request.side_effect = [
            response(200, '{"runtimes": [{"id": "c"}, {"id": "b"}], '
                     '"next": "http://x"}'),
            response(200, '{"runtimes": [{"id": "a"}]}')]
        self.assertEqual([r.id for r in api.runtime_list(self.request)],
                         ['c', 'b', 'a'])
        markers = [c[1]['params'].get('marker')
                   for c in request.call_args_list]
        self.assertEqual(markers, [None, 'b'])

    @mock.patch.object(requests, 'request')
    def test_usage_is_the_projects_row(self, request):
        request.return_value = response(
            200, '{"usages": [{"project_id": "p", "total_executions": 2}]}')
        usage = api.usage_get(self.request, '2026-12-01', '2026-12-08')
        self.assertEqual(usage['total_executions'], 2)
        self.assertEqual(request.call_args[1]['params'],
                         {'start': '2026-12-01', 'end': '2026-12-08'})

    @mock.patch.object(requests, 'request')
    def test_errors_carry_the_faultstring(self, request):
        cases = [
            (400, '{"faultstring": "Invalid cpu resource specified."}',
             exceptions.QinlingRecoverable, 'Invalid cpu resource specified.'),
            (404, '{"faultstring": "Function x not found."}',
             exceptions.QinlingNotFound, 'Function x not found.'),
            (401, '{"faultstring": "Unauthorized"}',
             exceptions.QinlingUnauthorized, 'Unauthorized'),
            (502, 'Bad gateway', exceptions.QinlingRecoverable,
             'Bad gateway'),
        ]
        for status, body, cls, message in cases:
            request.return_value = response(status, body)
            with self.assertRaises(cls) as ctx:
                api.function_get(self.request, 'x')
            self.assertEqual(str(ctx.exception), message)

    @mock.patch.object(requests, 'request')
    def test_a_package_goes_as_multipart_with_its_md5(self, request):
        request.return_value = response(201, '{"id": "f"}')
        api.function_create(self.request, 'f', {'source': 'package'},
                            runtime_id='r', package=b'PK', timeout=5)
        kwargs = request.call_args[1]
        self.assertEqual(kwargs['data']['runtime_id'], 'r')
        self.assertEqual(kwargs['data']['timeout'], '5')
        self.assertIn('"md5sum": "', kwargs['data']['code'])
        self.assertEqual(kwargs['files']['package'][1], b'PK')

    def test_result_and_code_are_parsed_from_their_json_strings(self):
        e = api.Execution({'result': '{"duration": 1.5, "output": 7}'})
        self.assertEqual((e.duration, e.output), (1.5, 7))
        f = api.Function({'code': '{"source": "image", "image": "i"}'})
        self.assertEqual(f.source, 'image')

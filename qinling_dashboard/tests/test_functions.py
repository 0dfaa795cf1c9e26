import io
import json
import zipfile

from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from qinling_dashboard.api import qinling as api
from qinling_dashboard import exceptions
from qinling_dashboard.tests import helpers

INDEX_URL = reverse('horizon:project:functions:index')
CREATE_URL = reverse('horizon:project:functions:create')
FID = '0b8a4ce6-7a6c-4c9a-8a4e-1d6f0d8e5a01'
RID = '5a2c3c87-2d7d-4d51-9b0e-9d6f36e70f02'


def runtime(status='available'):
    return api.Runtime({'id': RID, 'name': 'python3', 'image': 'python3',
                        'status': status})


def function(**kw):
    body = {'id': FID, 'name': 'hello', 'runtime_id': RID, 'count': 3,
            'code': json.dumps({'source': 'package', 'md5sum': 'x'}),
            'entry': 'hello.main', 'cpu': 100, 'memory_size': 33554432,
            'timeout': 5, 'created_at': '2026-01-01 00:00:00'}
    body.update(kw)
    return api.Function(body)


class FunctionsIndexTests(helpers.TestCase):
    @helpers.create_mocks({api: ('function_page', 'runtime_list')})
    def test_lists_functions_with_their_runtime(self):
        self.mock_function_page.return_value = ([function()], False)
        self.mock_runtime_list.return_value = [runtime()]
        res = self.client.get(INDEX_URL)
        self.assertTemplateUsed(res, 'horizon/common/_data_table_view.html')
        self.assertContains(res, 'hello')
        self.assertContains(res, 'python3')
        self.assertContains(res, '32 MB')
        self.mock_function_page.assert_called_once_with(
            helpers.IsHttpRequest(), marker=None, sort_dir='desc')

    @helpers.create_mocks({api: ('function_page',)})
    def test_an_api_error_is_a_message_not_a_500(self):
        self.assert_api_error_is_a_message(self.mock_function_page,
                                           INDEX_URL)


class CreateFunctionTests(helpers.TestCase):
    def _post(self, **fields):
        data = {'name': 'hello', 'source': 'file', 'runtime_id': RID,
                'entry': '', 'cpu': '', 'memory_size': '', 'timeout': ''}
        data.update(fields)
        return self.client.post(CREATE_URL, data)

    @helpers.create_mocks({api: ('runtime_list', 'function_create')})
    def test_a_single_file_is_zipped_with_its_entry(self):
        self.mock_runtime_list.return_value = [runtime()]
        self.mock_function_create.return_value = function()
        upload = SimpleUploadedFile('hello.py', b'def main():\n  return 1\n')
        res = self._post(code_file=upload)
        self.assertNoFormErrors(res)
        self.assertRedirectsNoFollow(res, INDEX_URL)
        args, kwargs = self.mock_function_create.call_args
        self.assertEqual(args[1:], ('hello', {'source': 'package'}))
        self.assertEqual(kwargs['entry'], 'hello.main')
        self.assertEqual(kwargs['runtime_id'], RID)
        with zipfile.ZipFile(io.BytesIO(kwargs['package'])) as zf:
            self.assertEqual(zf.namelist(), ['hello.py'])

    @helpers.create_mocks({api: ('runtime_list', 'function_create')})
    def test_a_swift_object_goes_as_code(self):
        self.mock_runtime_list.return_value = [runtime()]
        self.mock_function_create.return_value = function()
        res = self._post(source='swift', container='c', object='o.zip')
        self.assertNoFormErrors(res)
        args, kwargs = self.mock_function_create.call_args
        self.assertEqual(args[2], {'source': 'swift', 'swift': {
            'container': 'c', 'object': 'o.zip'}})
        self.assertIsNone(kwargs['package'])

    @helpers.create_mocks({api: ('runtime_list', 'function_create')})
    def test_no_file_is_a_form_error_without_a_call(self):
        self.mock_runtime_list.return_value = [runtime()]
        res = self._post()
        self.assertFormErrors(res, 1, 'Choose a file to upload.')
        self.mock_function_create.assert_not_called()

    @helpers.create_mocks({api: ('runtime_list', 'function_create')})
    def test_the_servers_faultstring_is_shown_in_the_form(self):
        self.mock_runtime_list.return_value = [runtime('creating')]
        fault = 'Runtime %s is not available.' % RID
        self.mock_function_create.side_effect = exceptions.from_status(
            400, fault)
        upload = SimpleUploadedFile('hello.py', b'x = 1\n')
        res = self._post(code_file=upload)
        self.assertEqual(res.status_code, 200)
        self.assertContains(res, fault)


class FunctionDetailTests(helpers.TestCase):
    @helpers.create_mocks({api: ('function_get', 'runtime_get')})
    def test_overview(self):
        self.mock_function_get.return_value = function()
        self.mock_runtime_get.return_value = runtime()
        res = self.client.get(reverse('horizon:project:functions:detail',
                                      args=[FID]))
        self.assertEqual(res.status_code, 200)
        self.assertContains(res, 'hello.main')
        self.assertContains(res, 'Webhooks')

    @helpers.create_mocks({api: ('function_get',)})
    def test_another_projects_function_is_not_found(self):
        self.mock_function_get.side_effect = exceptions.from_status(
            404, 'Function not found.')
        for name in ('detail', 'update', 'create_version', 'create_webhook'):
            res = self.client.get(reverse('horizon:project:functions:' + name,
                                          args=[FID]))
            self.assertEqual(res.status_code, 404, name)

    @helpers.create_mocks({api: ('function_get',)})
    def test_an_api_failure_goes_back_to_the_list_with_its_message(self):
        self.mock_function_get.side_effect = exceptions.from_status(
            503, 'Identity service unavailable')
        res = self.client.get(reverse('horizon:project:functions:detail',
                                      args=[FID]))
        self.assertRedirectsNoFollow(res, INDEX_URL)

    @helpers.create_mocks({api: ('function_get', 'alias_list',
                                 'webhook_list', 'runtime_get')})
    def test_webhooks_of_the_function_and_its_aliases(self):
        self.mock_function_get.return_value = function()
        self.mock_runtime_get.return_value = runtime()
        self.mock_alias_list.return_value = [api.Alias({
            'name': 'prod', 'function_id': FID, 'function_version': 1})]
        self.mock_webhook_list.return_value = [
            api.Webhook({'id': 'w1', 'function_alias': 'prod',
                         'function_id': None, 'function_version': None,
                         'webhook_url': 'http://h/v1/webhooks/w1/invoke'}),
            api.Webhook({'id': 'w2', 'function_id': FID,
                         'function_alias': None, 'function_version': 0,
                         'webhook_url': 'http://h/v1/webhooks/w2/invoke'}),
            api.Webhook({'id': 'w3', 'function_id': 'other',
                         'function_alias': None, 'function_version': 0,
                         'webhook_url': 'http://h/v1/webhooks/w3/invoke'})]
        res = self.client.get(
            reverse('horizon:project:functions:detail', args=[FID]) +
            '?tab=function_details__webhooks')
        self.assertContains(res, 'value="http://h/v1/webhooks/w1/invoke"')
        self.assertContains(res, 'value="http://h/v1/webhooks/w2/invoke"')
        self.assertNotContains(res, 'w3/invoke')

    @helpers.create_mocks({api: ('function_get', 'version_list',
                                 'alias_create')})
    def test_alias_create_shows_the_servers_message(self):
        self.mock_function_get.return_value = function()
        self.mock_version_list.return_value = []
        self.mock_alias_create.side_effect = exceptions.from_status(
            409, 'Alias already exists.')
        res = self.client.post(
            reverse('horizon:project:functions:create_alias', args=[FID]),
            {'function_id': FID, 'name': 'prod', 'function_version': '0'})
        self.assertContains(res, 'Alias already exists.')

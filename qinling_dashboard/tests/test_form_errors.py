"""Every form the API can refuse shows the server's faultstring in the form
(which stays open, answered 200), never an error page. The forms with
their own test module (function and runtime create, run, job, alias create)
are there; these are the rest."""

import json
from unittest import mock

from django.urls import reverse

from qinling_dashboard.api import qinling as api
from qinling_dashboard import exceptions
from qinling_dashboard.tests import helpers

FID = '0b8a4ce6-7a6c-4c9a-8a4e-1d6f0d8e5a01'
RID = '5a2c3c87-2d7d-4d51-9b0e-9d6f36e70f02'

FUNCTION = api.Function({
    'id': FID, 'name': 'hello', 'runtime_id': RID, 'entry': 'hello.main',
    'code': json.dumps({'source': 'package'}), 'description': '',
    'cpu': 100, 'memory_size': 33554432, 'timeout': 5})
RUNTIME = api.Runtime({'id': RID, 'name': 'python3', 'image': 'python3',
                       'status': 'error', 'description': ''})
ALIAS = api.Alias({'name': 'prod', 'function_id': FID,
                   'function_version': 1, 'description': ''})
VERSION = api.Version({'function_id': FID, 'version_number': 1})

# name, URL name and args, the API call that refuses, its status and
# faultstring, the form's data, and the calls that read what the form shows.
MEMBER_CASES = (
    ('function update, memory out of range',
     'horizon:project:functions:update', [FID], 'function_update', 400,
     'Memory size must be between 33554432 and 134217728 bytes.',
     {'function_id': FID, 'name': 'hello', 'memory_size': '1'}, {}),
    ('version create, code unchanged',
     'horizon:project:functions:create_version', [FID], 'version_create',
     403, 'Function package not changed since the latest version 1.',
     {'function_id': FID}, {}),
    ('alias update, version gone meanwhile',
     'horizon:project:functions:update_alias', [FID, 'prod'],
     'alias_update', 404, 'FunctionVersion not found.',
     {'function_id': FID, 'name': 'prod', 'function_version': '1'},
     {'alias_get': ALIAS, 'version_list': [VERSION]}),
    ('webhook create, a function not the project\'s',
     'horizon:project:functions:create_webhook', [FID], 'webhook_create',
     404, 'Function not found.',
     {'function_id': FID, 'function_version': '0'},
     {'version_list': [], 'alias_list': []}),
)

ADMIN_CASES = (
    ('runtime update, image of a runtime in error',
     'horizon:admin:runtimes:update', [RID], 'runtime_update', 409,
     'Runtime %s is not available.' % RID,
     {'runtime_id': RID, 'image': 'python3-new'}, {'runtime_get': RUNTIME}),
)


class FormErrorCases(object):
    cases = ()

    def test_the_servers_faultstring_is_shown_in_the_form(self):
        for (name, url_name, args, call, status, fault, data,
             reads) in self.cases:
            reads = dict(reads, function_get=FUNCTION)
            with self.subTest(name), \
                    mock.patch.multiple(api, **{
                        k: mock.Mock(return_value=v)
                        for k, v in reads.items()}), \
                    mock.patch.object(api, call) as refusing:
                refusing.side_effect = exceptions.from_status(status, fault)
                res = self.client.post(reverse(url_name, args=args), data)
                self.assertEqual(res.status_code, 200)
                self.assertContains(res, fault)
                refusing.assert_called_once()


class MemberFormErrorTests(FormErrorCases, helpers.TestCase):
    cases = MEMBER_CASES


class AdminFormErrorTests(FormErrorCases, helpers.BaseAdminViewTests):
    cases = ADMIN_CASES

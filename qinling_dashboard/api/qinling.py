"""The function-engine v1 API, called with the user's token.

Plain HTTP (requests) rather than python-qinlingclient: Horizon already holds
the user's token and catalog, and the client's legacy HTTPClient mishandles
errors on Python 3 (/work/shared/reference/client-contract.md §5.11 in the
project's notes; docs/dashboard.md). Every error becomes a QinlingError whose
message is the server's faultstring.
"""

import hashlib
import io
import json
import os
import zipfile

from django.conf import settings
import requests

from horizon.utils import functions as horizon_utils
from openstack_dashboard.api import base

from qinling_dashboard import exceptions

SERVICE_TYPE = 'function-engine'

# Seconds a call may take: a sync execution lasts up to its function's
# timeout, which the API caps well below this.
TIMEOUT = getattr(settings, 'QINLING_API_TIMEOUT', 330)


class Runtime(base.APIDictWrapper):
    _attrs = ['id', 'name', 'image', 'status', 'description', 'is_public',
              'trusted', 'project_id', 'created_at', 'updated_at']


class Function(base.APIDictWrapper):
    _attrs = ['id', 'name', 'description', 'count', 'code', 'runtime_id',
              'entry', 'project_id', 'created_at', 'updated_at', 'cpu',
              'memory_size', 'timeout']

    @property
    def code_dict(self):
        return _json_field(self._apidict.get('code')) or {}

    @property
    def source(self):
        return self.code_dict.get('source', '')


class Execution(base.APIDictWrapper):
    _attrs = ['id', 'function_id', 'function_version', 'function_alias',
              'description', 'input', 'result', 'status', 'sync',
              'project_id', 'created_at', 'updated_at']

    @property
    def result_dict(self):
        value = _json_field(self._apidict.get('result'))
        return value if isinstance(value, dict) else {}

    @property
    def duration(self):
        return self.result_dict.get('duration')

    @property
    def output(self):
        return self.result_dict.get('output')


class Version(base.APIDictWrapper):
    _attrs = ['id', 'function_id', 'description', 'version_number', 'count',
              'project_id', 'created_at', 'updated_at']


class Alias(base.APIDictWrapper):
    _attrs = ['name', 'function_id', 'description', 'function_version',
              'project_id', 'created_at', 'updated_at']

    @property
    def id(self):
        return self.name


class Webhook(base.APIDictWrapper):
    _attrs = ['id', 'function_id', 'function_version', 'function_alias',
              'description', 'project_id', 'created_at', 'updated_at',
              'webhook_url']


class Job(base.APIDictWrapper):
    _attrs = ['id', 'name', 'count', 'status', 'function_id',
              'function_alias', 'function_version', 'function_input',
              'pattern', 'first_execution_time', 'next_execution_time',
              'project_id', 'created_at', 'updated_at']


def _json_field(value):
    """code and result travel as JSON-encoded strings."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _endpoint(request):
    return base.url_for(request, SERVICE_TYPE).rstrip('/') + '/v1'


def _fault(resp):
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get('faultstring'):
        return body['faultstring']
    return resp.text.strip() or resp.reason or 'HTTP %s' % resp.status_code


def _call(request, method, path, **kwargs):
    headers = {'X-Auth-Token': request.user.token.id}
    if 'json' in kwargs:
        headers['Content-Type'] = 'application/json'
    verify = not getattr(settings, 'OPENSTACK_SSL_NO_VERIFY', False)
    cacert = getattr(settings, 'OPENSTACK_SSL_CACERT', None)
    if verify and cacert:
        verify = cacert
    try:
        resp = requests.request(method, _endpoint(request) + path,
                                headers=headers, timeout=TIMEOUT,
                                verify=verify, **kwargs)
    except requests.RequestException as e:
        raise exceptions.QinlingRecoverable(
            503, 'The function service cannot be reached: %s' % e)
    if resp.status_code >= 400:
        raise exceptions.from_status(resp.status_code, _fault(resp))
    return resp


def _get(request, path, key=None, params=None):
    body = _call(request, 'GET', path, params=params).json()
    return body[key] if key else body


def _page(request, path, key, cls, marker=None, sort_dir='desc',
          limit=None, **filters):
    """One page of a list and whether another follows in its direction.

    Newest first by default (the API's sort_dir=desc); a page is the user's
    Horizon page size unless limit says otherwise.
    """
    params = {k: v for k, v in filters.items() if v not in (None, '')}
    params.update(sort_dir=sort_dir,
                  limit=limit or horizon_utils.get_page_size(request))
    if marker:
        params['marker'] = marker
    body = _get(request, path, params=params)
    return [cls(item) for item in body[key]], bool(body.get('next'))


def _all(request, path, key, cls, **filters):
    """Every item of a list, newest first, page after page: for choice
    lists and a function's own objects, which stay short. Aliases carry no
    id to page by: their list is one page of 1,000."""
    items, marker = [], None
    while True:
        page, more = _page(request, path, key, cls, marker=marker,
                           limit=1000, **filters)
        items.extend(page)
        marker = page[-1]._apidict.get('id') if page else None
        if not more or not marker:
            return items


def _target(function_id=None, function_version=0, function_alias=None):
    """What an execution, a job or a webhook runs: an alias, or a function's
    version (0: its latest code)."""
    if function_alias:
        return {'function_id': None, 'function_version': None,
                'function_alias': function_alias}
    return {'function_id': function_id,
            'function_version': int(function_version or 0),
            'function_alias': None}


# ---------------------------------------------------------------- runtimes

def runtime_list(request):
    return _all(request, '/runtimes', 'runtimes', Runtime)


def runtime_page(request, marker=None, sort_dir='desc'):
    return _page(request, '/runtimes', 'runtimes', Runtime, marker, sort_dir)


def runtime_get(request, runtime_id):
    return Runtime(_get(request, '/runtimes/%s' % runtime_id))


def runtime_pool(request, runtime_id):
    """{"name": ..., "capacity": {"total": N, "available": M}}."""
    return _get(request, '/runtimes/%s/pool' % runtime_id)


def runtime_create(request, image, name=None, description=None,
                   is_public=True, trusted=True):
    body = {'image': image, 'is_public': is_public, 'trusted': trusted}
    if name:
        body['name'] = name
    if description:
        body['description'] = description
    return Runtime(_call(request, 'POST', '/runtimes', json=body).json())


def runtime_update(request, runtime_id, **fields):
    return Runtime(_call(request, 'PUT', '/runtimes/%s' % runtime_id,
                         json=fields).json())


def runtime_delete(request, runtime_id):
    _call(request, 'DELETE', '/runtimes/%s' % runtime_id)


# --------------------------------------------------------------- functions

def function_list(request):
    return _all(request, '/functions', 'functions', Function)


def function_page(request, marker=None, sort_dir='desc'):
    return _page(request, '/functions', 'functions', Function, marker,
                 sort_dir)


def function_get(request, function_id):
    return Function(_get(request, '/functions/%s' % function_id))


def zip_single_file(filename, content):
    """A one-file package, as the CLI's --file makes it."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, 'w', zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(os.path.basename(filename), content)
    return buf.getvalue()


def _numbers(fields, cpu=None, memory_size=None, timeout=None):
    for key, value in (('cpu', cpu), ('memory_size', memory_size),
                       ('timeout', timeout)):
        if value not in (None, ''):
            fields[key] = str(value)
    return fields


def function_create(request, name, code, runtime_id=None, package=None,
                    entry=None, description=None, cpu=None, memory_size=None,
                    timeout=None):
    """code: {"source": "package"|"swift"|"image", ...}; package: zip bytes.

    A package goes as multipart with its md5sum in code, the rest as a form,
    the way python-qinlingclient sends them.
    """
    code = dict(code)
    fields = {'name': name}
    if runtime_id:
        fields['runtime_id'] = runtime_id
    if entry:
        fields['entry'] = entry
    if description:
        fields['description'] = description
    _numbers(fields, cpu, memory_size, timeout)
    files = None
    if package is not None:
        code['md5sum'] = hashlib.md5(package).hexdigest()
        files = {'package': ('%s.zip' % (name or 'package'), package,
                             'application/zip')}
    fields['code'] = json.dumps(code)
    return Function(_call(request, 'POST', '/functions', data=fields,
                          files=files).json())


def function_update(request, function_id, package=None, **fields):
    data = {k: v for k, v in fields.items() if k not in (
        'cpu', 'memory_size', 'timeout') and v is not None}
    _numbers(data, fields.get('cpu'), fields.get('memory_size'),
             fields.get('timeout'))
    files = None
    if package is not None:
        data['code'] = json.dumps({
            'source': 'package',
            'md5sum': hashlib.md5(package).hexdigest()})
        files = {'package': ('package.zip', package, 'application/zip')}
    return Function(_call(request, 'PUT', '/functions/%s' % function_id,
                          data=data, files=files).json())


def function_delete(request, function_id):
    _call(request, 'DELETE', '/functions/%s' % function_id)


def function_download(request, function_id):
    """The function's package: a streamed requests response."""
    return _call(request, 'GET', '/functions/%s' % function_id,
                 params={'download': 'true'}, stream=True)


def version_list(request, function_id):
    return [Version(v) for v in _get(
        request, '/functions/%s/versions' % function_id, 'function_versions')]


def version_create(request, function_id, description=None):
    return Version(_call(request, 'POST', '/functions/%s/versions' %
                         function_id,
                         json={'description': description}).json())


def version_delete(request, function_id, version_number):
    _call(request, 'DELETE', '/functions/%s/versions/%s' %
          (function_id, version_number))


def alias_list(request, function_id=None):
    # An alias's id in paging is its name.
    return _all(request, '/aliases', 'function_aliases', Alias,
                function_id=function_id)


def alias_get(request, name):
    return Alias(_get(request, '/aliases/%s' % name))


def alias_create(request, name, function_id, function_version=0,
                 description=None):
    body = {'name': name, 'function_id': function_id,
            'function_version': int(function_version or 0)}
    if description:
        body['description'] = description
    return Alias(_call(request, 'POST', '/aliases', json=body).json())


def alias_update(request, name, function_version=None, description=None):
    body = {'function_id': None, 'description': description,
            'function_version': None if function_version is None
            else str(function_version)}
    return Alias(_call(request, 'PUT', '/aliases/%s' % name,
                       json=body).json())


def alias_delete(request, name):
    _call(request, 'DELETE', '/aliases/%s' % name)


def webhook_list(request):
    return _all(request, '/webhooks', 'webhooks', Webhook)


def webhook_create(request, function_id=None, function_version=0,
                   function_alias=None, description=None):
    body = _target(function_id, function_version, function_alias)
    if description:
        body['description'] = description
    return Webhook(_call(request, 'POST', '/webhooks', json=body).json())


def webhook_delete(request, webhook_id):
    _call(request, 'DELETE', '/webhooks/%s' % webhook_id)


# -------------------------------------------------------------- executions

def execution_page(request, marker=None, sort_dir='desc', **filters):
    """filters: the API's (status, function_id, ...)."""
    return _page(request, '/executions', 'executions', Execution, marker,
                 sort_dir, **filters)


def execution_get(request, execution_id):
    return Execution(_get(request, '/executions/%s' % execution_id))


def execution_log(request, execution_id):
    return _call(request, 'GET', '/executions/%s/log' % execution_id).text


def execution_create(request, function_id=None, function_version=0,
                     function_alias=None, sync=True, input=None):
    body = _target(function_id, function_version, function_alias)
    body['sync'] = bool(sync)
    body['input'] = input or None
    return Execution(_call(request, 'POST', '/executions', json=body).json())


def execution_delete(request, execution_id):
    _call(request, 'DELETE', '/executions/%s' % execution_id)


# -------------------------------------------------------------------- jobs

def job_page(request, marker=None, sort_dir='desc'):
    return _page(request, '/jobs', 'jobs', Job, marker, sort_dir)


def job_get(request, job_id):
    return Job(_get(request, '/jobs/%s' % job_id))


def job_create(request, function_id=None, function_version=0,
               function_alias=None, name=None, pattern=None,
               first_execution_time=None, count=None, function_input=None):
    body = {'name': name or None, 'pattern': pattern or None,
            'first_execution_time': first_execution_time or None,
            'count': count, 'function_input': function_input or None}
    body.update(_target(function_id, function_version, function_alias))
    return Job(_call(request, 'POST', '/jobs', json=body).json())


def job_delete(request, job_id):
    _call(request, 'DELETE', '/jobs/%s' % job_id)


# ------------------------------------------------------------------- usage

def usage_get(request, start, end):
    """The project's usage over [start, end): totals and function_usages
    (GET /v1/usage, docs/operations.md)."""
    return _get(request, '/usage', 'usages',
                params={'start': start, 'end': end})[0]

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


# ---------------------------------------------------------------- runtimes

def runtime_list(request):
    return [Runtime(r) for r in _get(request, '/runtimes', 'runtimes')]


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
    return [Function(f) for f in _get(request, '/functions', 'functions')]


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
    aliases = [Alias(a) for a in _get(request, '/aliases',
                                      'function_aliases')]
    if function_id:
        aliases = [a for a in aliases if a.function_id == function_id]
    return aliases


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
    return [Webhook(w) for w in _get(request, '/webhooks', 'webhooks')]


def webhook_create(request, function_id=None, function_version=0,
                   function_alias=None, description=None):
    if function_alias:
        body = {'function_id': None, 'function_version': None,
                'function_alias': function_alias}
    else:
        body = {'function_id': function_id,
                'function_version': int(function_version or 0),
                'function_alias': None}
    if description:
        body['description'] = description
    return Webhook(_call(request, 'POST', '/webhooks', json=body).json())


def webhook_delete(request, webhook_id):
    _call(request, 'DELETE', '/webhooks/%s' % webhook_id)


# -------------------------------------------------------------- executions

def execution_list(request, **filters):
    params = {k: v for k, v in filters.items() if v}
    return [Execution(e) for e in _get(request, '/executions', 'executions',
                                       params=params or None)]


def execution_get(request, execution_id):
    return Execution(_get(request, '/executions/%s' % execution_id))


def execution_log(request, execution_id):
    return _call(request, 'GET', '/executions/%s/log' % execution_id).text


def execution_create(request, function_id=None, function_version=0,
                     function_alias=None, sync=True, input=None):
    if function_alias:
        body = {'function_id': None, 'function_version': None,
                'function_alias': function_alias}
    else:
        body = {'function_id': function_id,
                'function_version': int(function_version or 0),
                'function_alias': None}
    body['sync'] = bool(sync)
    body['input'] = input or None
    return Execution(_call(request, 'POST', '/executions', json=body).json())


def execution_delete(request, execution_id):
    _call(request, 'DELETE', '/executions/%s' % execution_id)


# -------------------------------------------------------------------- jobs

def job_list(request):
    return [Job(j) for j in _get(request, '/jobs', 'jobs')]


def job_get(request, job_id):
    return Job(_get(request, '/jobs/%s' % job_id))


def job_create(request, function_id=None, function_version=0,
               function_alias=None, name=None, pattern=None,
               first_execution_time=None, count=None, function_input=None):
    body = {'name': name or None, 'pattern': pattern or None,
            'first_execution_time': first_execution_time or None,
            'count': count, 'function_input': function_input or None}
    if function_alias:
        body.update(function_id=None, function_version=None,
                    function_alias=function_alias)
    else:
        body.update(function_id=function_id,
                    function_version=int(function_version or 0),
                    function_alias=None)
    return Job(_call(request, 'POST', '/jobs', json=body).json())


def job_delete(request, job_id):
    _call(request, 'DELETE', '/jobs/%s' % job_id)

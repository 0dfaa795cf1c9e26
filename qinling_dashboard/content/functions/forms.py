import os
import zipfile

from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from horizon import exceptions as horizon_exceptions
from horizon import forms
from horizon import messages

from qinling_dashboard.api import qinling as api
from qinling_dashboard.content import common

SOURCES = (
    ('file', _('A single file')),
    ('package', _('A zip package')),
    ('swift', _('A Swift object')),
    ('image', _('A container image')),
)


def _switched(source_labels, **attrs):
    """attrs for a field shown only for some code sources (Horizon's
    switchable fields, as core forms use them)."""
    attrs.update({'class': 'switched', 'data-switch-on': 'source'})
    for source, label in source_labels:
        attrs['data-source-%s' % source] = label
    return attrs


def _read_upload(upload, as_single_file):
    content = upload.read()
    if as_single_file:
        return api.zip_single_file(upload.name, content)
    return content


class ResourceFields(forms.SelfHandlingForm):
    """entry, cpu, memory and timeout: create and edit share them; the
    server checks the ranges and its message is shown."""

    entry = forms.CharField(
        max_length=255, label=_('Entry'), required=False,
        help_text=_('module.function, e.g. hello.main. Empty: the '
                    'default (for a single file: <its name>.main).'))
    cpu = forms.IntegerField(label=_('CPU (millicpu)'), required=False)
    memory_size = forms.IntegerField(label=_('Memory (bytes)'),
                                     required=False)
    timeout = forms.IntegerField(label=_('Timeout (seconds)'),
                                 required=False)

class CreateFunctionForm(ResourceFields):
    name = forms.CharField(max_length=255, label=_('Name'))
    description = forms.CharField(max_length=255, label=_('Description'),
                                  required=False)
    source = forms.ThemableChoiceField(
        label=_('Code'), choices=SOURCES,
        widget=forms.ThemableSelectWidget(attrs={
            'class': 'switchable', 'data-slug': 'source'}))
    code_file = forms.FileField(
        label=_('File'), required=False,
        widget=forms.FileInput(attrs=_switched(
            [('file', _('File')), ('package', _('Zip package'))])))
    container = forms.CharField(
        label=_('Container'), required=False,
        widget=forms.TextInput(attrs=_switched([('swift', _('Container'))])))
    object = forms.CharField(
        label=_('Object'), required=False,
        widget=forms.TextInput(attrs=_switched([('swift', _('Object'))])))
    image = forms.CharField(
        label=_('Image'), required=False,
        widget=forms.TextInput(attrs=_switched([('image', _('Image'))])))
    runtime_id = forms.ThemableChoiceField(
        label=_('Runtime'), required=False,
        help_text=_('Not used by image functions.'))

    field_order = ['name', 'description', 'source', 'code_file', 'container',
                   'object', 'image', 'runtime_id', 'entry', 'cpu',
                   'memory_size', 'timeout']

    def __init__(self, request, *args, **kwargs):
        super().__init__(request, *args, **kwargs)
        runtimes = common.runtime_names(request).values()
        # Every runtime is offered: choosing one that is not available
        # yet gets the server's answer.
        self.fields['runtime_id'].choices = [('', _('Select a runtime'))] + [
            (r.id, '%s (%s)' % (r.name or r.image, r.status))
            for r in runtimes]

    def clean(self):
        data = super().clean()
        source = data.get('source')
        if source in ('file', 'package') and not data.get('code_file'):
            self.add_error('code_file', _('Choose a file to upload.'))
        if source == 'package' and data.get('code_file') and \
                not zipfile.is_zipfile(data['code_file']):
            self.add_error('code_file', _('This file is not a zip package.'))
        return data

    def handle(self, request, data):
        source = data['source']
        package = None
        entry = data.get('entry')
        if source in ('file', 'package'):
            upload = data['code_file']
            upload.seek(0)
            package = _read_upload(upload, source == 'file')
            if source == 'file' and not entry:
                entry = '%s.main' % os.path.splitext(
                    os.path.basename(upload.name))[0]
            code = {'source': 'package'}
        elif source == 'swift':
            code = {'source': 'swift', 'swift': {
                'container': data.get('container') or '',
                'object': data.get('object') or ''}}
        else:
            code = {'source': 'image', 'image': data.get('image') or ''}
        try:
            function = api.function_create(
                request, data['name'], code,
                runtime_id=None if source == 'image' else (
                    data.get('runtime_id') or None),
                package=package, entry=entry,
                description=data.get('description'), cpu=data.get('cpu'),
                memory_size=data.get('memory_size'),
                timeout=data.get('timeout'))
        except Exception as e:
            return common.form_error(self, request, e)
        messages.success(request,
                         _('Created function "%s".') % data['name'])
        return function


class UpdateFunctionForm(ResourceFields):
    function_id = forms.CharField(widget=forms.HiddenInput())
    name = forms.CharField(max_length=255, label=_('Name'))
    description = forms.CharField(max_length=255, label=_('Description'),
                                  required=False)
    code_file = forms.FileField(
        label=_('New code (zip package)'), required=False,
        help_text=_('Package functions only. Leave empty to keep the '
                    'code.'))

    def handle(self, request, data):
        package = None
        if data.get('code_file'):
            package = data['code_file'].read()
        fields = {k: data.get(k) for k in ('name', 'description', 'entry',
                                          'cpu', 'memory_size', 'timeout')}
        fields['description'] = fields['description'] or ''
        if not fields['entry']:
            fields.pop('entry')
        try:
            function = api.function_update(request, data['function_id'],
                                           package=package, **fields)
        except Exception as e:
            return common.form_error(self, request, e)
        messages.success(request, _('Updated function "%s".') % data['name'])
        return function


class CreateVersionForm(forms.SelfHandlingForm):
    function_id = forms.CharField(widget=forms.HiddenInput())
    description = forms.CharField(max_length=255, label=_('Description'),
                                  required=False)

    def handle(self, request, data):
        try:
            version = api.version_create(request, data['function_id'],
                                         data.get('description') or None)
        except Exception as e:
            return common.form_error(self, request, e)
        messages.success(request, _('Created version %s.') %
                         version.version_number)
        return version


def _version_choices(request, function_id):
    choices = [('0', _('0 (the latest code)'))]
    try:
        choices += [(str(v.version_number), str(v.version_number))
                    for v in api.version_list(request, function_id)]
    except Exception:
        horizon_exceptions.handle(request,
                                  _('Unable to retrieve versions.'))
    return choices


class CreateAliasForm(forms.SelfHandlingForm):
    function_id = forms.CharField(widget=forms.HiddenInput())
    name = forms.CharField(max_length=255, label=_('Name'))
    function_version = forms.ThemableChoiceField(label=_('Version'))
    description = forms.CharField(max_length=255, label=_('Description'),
                                  required=False)

    def __init__(self, request, *args, **kwargs):
        super().__init__(request, *args, **kwargs)
        self.fields['function_version'].choices = _version_choices(
            request, self.initial.get('function_id'))

    def handle(self, request, data):
        try:
            alias = api.alias_create(request, data['name'],
                                     data['function_id'],
                                     data['function_version'],
                                     data.get('description'))
        except Exception as e:
            return common.form_error(self, request, e)
        messages.success(request, _('Created alias "%s".') % data['name'])
        return alias


class UpdateAliasForm(CreateAliasForm):
    name = forms.CharField(label=_('Name'), widget=forms.TextInput(
        attrs={'readonly': 'readonly'}))

    def handle(self, request, data):
        try:
            alias = api.alias_update(request, data['name'],
                                     data['function_version'],
                                     data.get('description') or '')
        except Exception as e:
            return common.form_error(self, request, e)
        messages.success(request, _('Alias "%s" now runs version %s.') %
                         (data['name'], data['function_version']))
        return alias


class CreateWebhookForm(forms.SelfHandlingForm):
    function_id = forms.CharField(widget=forms.HiddenInput())
    function_version = forms.ThemableChoiceField(label=_('Version'))
    function_alias = forms.ThemableChoiceField(
        label=_('Alias'), required=False,
        help_text=_('When chosen, the webhook runs what the alias points '
                    'at, and the version is ignored.'))
    description = forms.CharField(max_length=255, label=_('Description'),
                                  required=False)

    def __init__(self, request, *args, **kwargs):
        super().__init__(request, *args, **kwargs)
        function_id = self.initial.get('function_id')
        self.fields['function_version'].choices = _version_choices(
            request, function_id)
        self.fields['function_alias'].choices = common.alias_choices(
            request, function_id)

    def handle(self, request, data):
        try:
            webhook = api.webhook_create(
                request, function_id=data['function_id'],
                function_version=data['function_version'],
                function_alias=data.get('function_alias') or None,
                description=data.get('description'))
        except Exception as e:
            return common.form_error(self, request, e)
        messages.success(request, _('Created webhook %s.') %
                         webhook.webhook_url)
        return webhook


def detail_url(function_id, tab=None):
    url = reverse('horizon:project:functions:detail', args=[function_id])
    if tab:
        url += '?tab=function_details__%s' % tab
    return url

from django.utils.translation import gettext_lazy as _

from horizon import forms
from horizon import messages

from qinling_dashboard.api import qinling as api
from qinling_dashboard.content import common


class CreateRuntimeForm(forms.SelfHandlingForm):
    image = forms.CharField(
        max_length=255, label=_('Image'), required=False,
        help_text=_('e.g. openstackqinling/python3-runtime'))
    name = forms.CharField(max_length=255, label=_('Name'), required=False)
    description = forms.CharField(max_length=255, label=_('Description'),
                                  required=False)
    is_public = forms.BooleanField(label=_('Public'), required=False,
                                   initial=True)
    trusted = forms.BooleanField(label=_('Trusted'), required=False,
                                 initial=True)

    def handle(self, request, data):
        # An empty image goes to the server, whose message says what is
        # missing.
        try:
            runtime = api.runtime_create(
                request, data.get('image') or None, name=data.get('name'),
                description=data.get('description'),
                is_public=data['is_public'], trusted=data['trusted'])
        except Exception as e:
            return common.form_error(self, request, e)
        messages.success(request, _('Runtime %s is being created.') %
                         (runtime.name or runtime.id))
        return runtime


class UpdateRuntimeForm(forms.SelfHandlingForm):
    runtime_id = forms.CharField(widget=forms.HiddenInput())
    name = forms.CharField(max_length=255, label=_('Name'), required=False)
    description = forms.CharField(max_length=255, label=_('Description'),
                                  required=False)
    image = forms.CharField(max_length=255, label=_('Image'))

    def handle(self, request, data):
        fields = {'name': data.get('name') or '',
                  'description': data.get('description') or ''}
        if data['image'] != self.initial.get('image'):
            fields['image'] = data['image']
        try:
            runtime = api.runtime_update(request, data['runtime_id'],
                                         **fields)
        except Exception as e:
            return common.form_error(self, request, e)
        messages.success(request, _('Updated runtime %s.') %
                         (runtime.name or runtime.id))
        return runtime

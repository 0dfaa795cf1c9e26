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
    """Sends only what the admin changed, and no length limit of its own:
    a runtime in error carries the engine's reason as its description
    (longer than the 255 characters an admin may set), which must not
    stop a new image or name; a too long value typed here is the API's
    message."""
    runtime_id = forms.CharField(widget=forms.HiddenInput())
    name = forms.CharField(label=_('Name'), required=False)
    description = forms.CharField(label=_('Description'), required=False,
                                  widget=forms.Textarea(attrs={'rows': 3}))
    image = forms.CharField(label=_('Image'))

    def handle(self, request, data):
        fields = {k: data.get(k) or '' for k in ('name', 'description',
                                                 'image')
                  if (data.get(k) or '') != (self.initial.get(k) or '')}
        try:
            runtime = api.runtime_update(request, data['runtime_id'],
                                         **fields)
        except Exception as e:
            return common.form_error(self, request, e)
        messages.success(request, _('Updated runtime %s.') %
                         (runtime.name or runtime.id))
        return runtime

import json

from django.utils.translation import gettext_lazy as _

from horizon import forms
from horizon import messages

from qinling_dashboard.api import qinling as api
from qinling_dashboard.content import common


class RunFunctionForm(common.RunTargetForm):
    input = forms.CharField(
        label=_('Input (JSON)'), required=False,
        widget=forms.Textarea(attrs={'rows': 4}),
        help_text=_('A JSON object becomes the function\'s keyword '
                    'arguments, e.g. {"name": "Qinling"}.'))
    sync = forms.BooleanField(
        label=_('Wait for the result (sync)'), required=False, initial=True,
        help_text=_('Unchecked: run in the background and watch it in '
                    'the Executions list.'))

    def clean_input(self):
        return common.clean_json_input(self.cleaned_data.get('input'))

    def handle(self, request, data):
        try:
            execution = api.execution_create(
                request, sync=data.get('sync'), input=data.get('input'),
                **self.target(data))
        except Exception as e:
            return common.form_error(self, request, e)
        if execution.status == 'running':
            messages.info(request, _('Execution %s started.') % execution.id)
        elif execution.status == 'success':
            messages.success(request, _('Execution %s succeeded.') %
                             execution.id)
        else:
            messages.warning(request, _('Execution %s ended: %s.') %
                             (execution.id, execution.status))
        return execution


def pretty_json(value):
    if value in (None, ''):
        return ''
    try:
        return json.dumps(json.loads(value) if isinstance(value, str)
                          else value, indent=2, sort_keys=True)
    except ValueError:
        return value

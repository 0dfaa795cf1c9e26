import json

from django.utils.translation import gettext_lazy as _

from horizon import forms
from horizon import messages

from qinling_dashboard.api import qinling as api
from qinling_dashboard.content import common


class RunFunctionForm(forms.SelfHandlingForm):
    function_id = forms.ThemableChoiceField(label=_('Function'),
                                            required=False)
    function_version = forms.IntegerField(
        label=_('Version'), required=False, min_value=0, initial=0,
        help_text=_('0 runs the latest code.'))
    function_alias = forms.ThemableChoiceField(
        label=_('Alias'), required=False,
        help_text=_('When chosen, runs what the alias points at; function '
                    'and version are ignored.'))
    input = forms.CharField(
        label=_('Input (JSON)'), required=False,
        widget=forms.Textarea(attrs={'rows': 4}),
        help_text=_('A JSON object becomes the function\'s keyword '
                    'arguments, e.g. {"name": "Qinling"}.'))
    sync = forms.BooleanField(
        label=_('Wait for the result (sync)'), required=False, initial=True,
        help_text=_('Unchecked: run in the background and watch it in '
                    'the Executions list.'))

    def __init__(self, request, *args, **kwargs):
        super().__init__(request, *args, **kwargs)
        self.fields['function_id'].choices = common.function_choices(request)
        self.fields['function_alias'].choices = common.alias_choices(request)

    def clean_input(self):
        value = self.cleaned_data.get('input')
        try:
            return common.check_json(value)
        except ValueError as e:
            raise forms.ValidationError(
                _('The input is not valid JSON: %s') % e)

    def clean(self):
        data = super().clean()
        if not data.get('function_id') and not data.get('function_alias'):
            raise forms.ValidationError(
                _('Choose a function or an alias to run.'))
        return data

    def handle(self, request, data):
        try:
            execution = api.execution_create(
                request, function_id=data.get('function_id') or None,
                function_version=data.get('function_version') or 0,
                function_alias=data.get('function_alias') or None,
                sync=data.get('sync'), input=data.get('input'))
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

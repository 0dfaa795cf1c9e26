from django.utils.translation import gettext_lazy as _

from horizon import forms
from horizon import messages

from qinling_dashboard.api import qinling as api
from qinling_dashboard.content import common


class CreateJobForm(forms.SelfHandlingForm):
    name = forms.CharField(max_length=255, label=_('Name'), required=False)
    function_id = forms.ThemableChoiceField(label=_('Function'),
                                            required=False)
    function_version = forms.IntegerField(label=_('Version'), required=False,
                                          min_value=0, initial=0)
    function_alias = forms.ThemableChoiceField(
        label=_('Alias'), required=False,
        help_text=_('When chosen, the job runs what the alias points at.'))
    pattern = forms.CharField(
        max_length=255, label=_('Cron pattern'), required=False,
        help_text=_('Five fields in UTC, e.g. "*/5 * * * *". Empty: run '
                    'once, at the first execution time.'))
    first_execution_time = forms.CharField(
        max_length=64, label=_('First execution (UTC)'), required=False,
        help_text=_('e.g. 2030-01-01 10:00. Empty: from the pattern.'))
    count = forms.IntegerField(label=_('Count'), required=False,
                               help_text=_('How many times. Empty: no '
                                           'limit.'))
    function_input = forms.CharField(
        label=_('Input (JSON)'), required=False,
        widget=forms.Textarea(attrs={'rows': 3}))

    def __init__(self, request, *args, **kwargs):
        super().__init__(request, *args, **kwargs)
        self.fields['function_id'].choices = common.function_choices(request)
        self.fields['function_alias'].choices = common.alias_choices(request)

    def clean_function_input(self):
        try:
            return common.check_json(self.cleaned_data.get('function_input'))
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
            job = api.job_create(
                request, function_id=data.get('function_id') or None,
                function_version=data.get('function_version') or 0,
                function_alias=data.get('function_alias') or None,
                name=data.get('name'), pattern=data.get('pattern'),
                first_execution_time=data.get('first_execution_time'),
                count=data.get('count'),
                function_input=data.get('function_input'))
        except Exception as e:
            return common.form_error(self, request, e)
        messages.success(request, _('Created job "%s".') % (job.name or
                                                             job.id))
        return job

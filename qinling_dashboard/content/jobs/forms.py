from django.utils.translation import gettext_lazy as _

from horizon import forms
from horizon import messages

from qinling_dashboard.api import qinling as api
from qinling_dashboard.content import common


class CreateJobForm(common.RunTargetForm):
    name = forms.CharField(max_length=255, label=_('Name'), required=False)
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

    field_order = ['name', 'function_id', 'function_version',
                   'function_alias', 'pattern', 'first_execution_time',
                   'count', 'function_input']

    def clean_function_input(self):
        return common.clean_json_input(
            self.cleaned_data.get('function_input'))

    def handle(self, request, data):
        try:
            job = api.job_create(
                request, name=data.get('name'), pattern=data.get('pattern'),
                first_execution_time=data.get('first_execution_time'),
                count=data.get('count'),
                function_input=data.get('function_input'),
                **self.target(data))
        except Exception as e:
            return common.form_error(self, request, e)
        messages.success(request, _('Created job "%s".') % (job.name or
                                                             job.id))
        return job

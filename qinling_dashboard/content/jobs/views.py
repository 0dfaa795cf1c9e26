from django.urls import reverse_lazy
from django.utils.translation import gettext_lazy as _

from horizon import exceptions
from horizon import tables

from qinling_dashboard.api import qinling as api
from qinling_dashboard.content.functions import views as function_views
from qinling_dashboard.content.jobs import forms as job_forms
from qinling_dashboard.content.jobs import tables as job_tables

INDEX_URL = reverse_lazy('horizon:project:jobs:index')


class IndexView(tables.DataTableView):
    table_class = job_tables.JobsTable
    template_name = 'horizon/common/_data_table_view.html'
    page_title = _('Jobs')

    def get_data(self):
        try:
            return api.job_list(self.request)
        except Exception:
            exceptions.handle(self.request, _('Unable to retrieve jobs.'))
            return []


class CreateView(function_views.FormView):
    form_class = job_forms.CreateJobForm
    form_id = 'create_job_form'
    modal_id = 'create_job_modal'
    modal_header = page_title = _('Create Job')
    submit_label = _('Create Job')
    submit_url = reverse_lazy('horizon:project:jobs:create')
    success_url = INDEX_URL

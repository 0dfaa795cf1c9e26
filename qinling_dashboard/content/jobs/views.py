from django.urls import reverse_lazy
from django.utils.translation import gettext_lazy as _

from qinling_dashboard.api import qinling as api
from qinling_dashboard.content import common
from qinling_dashboard.content.functions import views as function_views
from qinling_dashboard.content.jobs import forms as job_forms
from qinling_dashboard.content.jobs import tables as job_tables

INDEX_URL = reverse_lazy('horizon:project:jobs:index')


class IndexView(common.PagedIndexView):
    table_class = job_tables.JobsTable
    page_title = _('Jobs')
    what = _('jobs')

    def page_call(self):
        return api.job_page


class CreateView(function_views.FormView):
    form_class = job_forms.CreateJobForm
    form_id = 'create_job_form'
    modal_id = 'create_job_modal'
    modal_header = page_title = _('Create Job')
    submit_label = _('Create Job')
    submit_url = reverse_lazy('horizon:project:jobs:create')
    success_url = INDEX_URL

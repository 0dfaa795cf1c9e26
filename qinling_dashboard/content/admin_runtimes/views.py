from django.urls import reverse
from django.urls import reverse_lazy
from django.utils.translation import gettext_lazy as _

from qinling_dashboard.api import qinling as api
from qinling_dashboard.content.admin_runtimes import forms as runtime_forms
from qinling_dashboard.content.admin_runtimes import tables as runtime_tables
from qinling_dashboard.content import common
from qinling_dashboard.content.functions import views as function_views
from qinling_dashboard.content.runtimes import views as project_views

INDEX_URL = reverse_lazy('horizon:admin:runtimes:index')


class IndexView(project_views.IndexView):
    table_class = runtime_tables.AdminRuntimesTable
    page_title = _('Function Runtimes')


class CreateView(function_views.FormView):
    form_class = runtime_forms.CreateRuntimeForm
    form_id = 'create_runtime_form'
    modal_id = 'create_runtime_modal'
    modal_header = page_title = _('Create Runtime')
    submit_label = _('Create Runtime')
    submit_url = reverse_lazy('horizon:admin:runtimes:create')
    success_url = INDEX_URL


class UpdateView(function_views.FormView):
    form_class = runtime_forms.UpdateRuntimeForm
    form_id = 'update_runtime_form'
    modal_id = 'update_runtime_modal'
    modal_header = page_title = _('Update Runtime')
    submit_label = _('Save Changes')
    success_url = INDEX_URL

    def get_initial(self):
        runtime = common.get_or_404(api.runtime_get, self.request,
                                    self.kwargs['runtime_id'], INDEX_URL)
        return {'runtime_id': runtime.id, 'name': runtime.name,
                'description': runtime.description, 'image': runtime.image}

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context['submit_url'] = reverse('horizon:admin:runtimes:update',
                                        args=[self.kwargs['runtime_id']])
        return context

from django.urls import reverse
from django.urls import reverse_lazy
from django.utils.translation import gettext_lazy as _

from horizon import exceptions
from horizon import views

from qinling_dashboard.api import qinling as api
from qinling_dashboard.content import common
from qinling_dashboard.content.executions import forms as execution_forms
from qinling_dashboard.content.executions import tables as execution_tables
from qinling_dashboard.content.functions import views as function_views

INDEX_URL = reverse_lazy('horizon:project:executions:index')


class IndexView(common.PagedIndexView):
    """Newest first, so a run just started is on the first page."""
    table_class = execution_tables.ExecutionsTable
    page_title = _('Executions')
    what = _('executions')

    def page_call(self):
        return api.execution_page

    def list_filters(self):
        info = self.get_server_filter_info(self.request)
        if info['value'] and info['field']:
            return {info['field']: info['value']}
        return {}


class CreateView(function_views.FormView):
    form_class = execution_forms.RunFunctionForm
    form_id = 'run_function_form'
    modal_id = 'run_function_modal'
    modal_header = page_title = _('Run Function')
    submit_label = _('Run')
    submit_url = reverse_lazy('horizon:project:executions:create')

    def get_initial(self):
        return {'function_id': self.request.GET.get('function_id', ''),
                'sync': True}

    def get_success_url_from_handled(self, execution):
        # A sync run opens its result; an async one the list, where its
        # row refreshes until it ends.
        if execution.sync:
            return reverse('horizon:project:executions:detail',
                           args=[execution.id])
        return INDEX_URL


class DetailView(views.HorizonTemplateView):
    template_name = 'qinling/executions/detail.html'
    page_title = _('Execution {{ execution.id }}')

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        execution = common.get_or_404(api.execution_get, self.request,
                                      kwargs['execution_id'], INDEX_URL)
        log = ''
        try:
            log = api.execution_log(self.request, execution.id)
        except Exception:
            exceptions.handle(self.request, _('Unable to retrieve the log.'))
        context.update({
            'execution': execution,
            'log': log,
            'input': execution_forms.pretty_json(execution.input),
            'result': execution_forms.pretty_json(execution.result),
            'output': execution.output,
            'url': reverse('horizon:project:executions:index'),
        })
        return context

from django import http
from django.urls import reverse
from django.urls import reverse_lazy
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_GET

from horizon import exceptions
from horizon import forms
from horizon import tabs

from qinling_dashboard.api import qinling as api
from qinling_dashboard.content import common
from qinling_dashboard.content.functions import forms as function_forms
from qinling_dashboard.content.functions import tables as function_tables
from qinling_dashboard.content.functions import tabs as function_tabs

INDEX_URL = reverse_lazy('horizon:project:functions:index')


class IndexView(common.PagedIndexView):
    table_class = function_tables.FunctionsTable
    page_title = _('Functions')
    what = _('functions')

    def page_call(self):
        return api.function_page

    def get_data(self):
        functions = super().get_data()
        if not functions:
            return functions
        runtimes = common.runtime_names(self.request)
        for f in functions:
            runtime = runtimes.get(f.runtime_id)
            f.runtime_name = (runtime.name or runtime.image) if runtime \
                else ('-' if not f.runtime_id else f.runtime_id)
            f.runtime_status = runtime.status if runtime else (
                'image' if f.source == 'image' else '-')
        return functions


class FormView(forms.ModalFormView):
    """A modal form that is a page of its own when opened directly."""
    template_name = 'qinling/form.html'
    ajax_template_name = 'horizon/common/_modal_form.html'


class UploadFormView(FormView):
    template_name = 'qinling/upload_form.html'
    ajax_template_name = 'qinling/_upload_form.html'


class CreateView(UploadFormView):
    form_class = function_forms.CreateFunctionForm
    form_id = 'create_function_form'
    modal_id = 'create_function_modal'
    modal_header = page_title = _('Create Function')
    submit_label = _('Create Function')
    submit_url = reverse_lazy('horizon:project:functions:create')
    success_url = INDEX_URL


class FunctionMixin(object):
    """The function of the URL, or Horizon's not-found page."""

    def dispatch(self, request, *args, **kwargs):
        self.function = common.get_or_404(api.function_get, request,
                                          kwargs['function_id'], INDEX_URL)
        return super().dispatch(request, *args, **kwargs)


class UpdateView(FunctionMixin, UploadFormView):
    form_class = function_forms.UpdateFunctionForm
    form_id = 'update_function_form'
    modal_id = 'update_function_modal'
    modal_header = page_title = _('Edit Function')
    submit_label = _('Save Changes')
    success_url = INDEX_URL

    def get_initial(self):
        f = self.function
        return {'function_id': f.id, 'name': f.name,
                'description': f.description, 'entry': f.entry,
                'cpu': f.cpu, 'memory_size': f.memory_size,
                'timeout': f.timeout}

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context['submit_url'] = reverse('horizon:project:functions:update',
                                        args=[self.function.id])
        return context


class DetailView(FunctionMixin, tabs.TabbedTableView):
    tab_group_class = function_tabs.FunctionDetailTabs
    template_name = 'horizon/common/_detail.html'
    page_title = '{{ function.name|default:function.id }}'

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        table = function_tables.FunctionsTable(self.request)
        context['function'] = self.function
        context['url'] = INDEX_URL
        context['actions'] = table.render_row_actions(self.function)
        return context

    def get_tabs(self, request, *args, **kwargs):
        return self.tab_group_class(request, function=self.function,
                                    **kwargs)


@require_GET
def download(request, function_id):
    try:
        resp = api.function_download(request, function_id)
    except Exception:
        exceptions.handle(request, _('Unable to download the code.'),
                          redirect=INDEX_URL)
    out = http.StreamingHttpResponse(resp.iter_content(64 * 1024),
                                     content_type='application/zip')
    out['Content-Disposition'] = 'attachment; filename="%s.zip"' % (
        function_id)
    return out


class FunctionFormView(FunctionMixin, FormView):
    """A form about one function, back to one tab of its page."""
    tab = None
    url_name = None

    def get_initial(self):
        return {'function_id': self.function.id}

    def get_success_url(self):
        return function_forms.detail_url(self.function.id, self.tab)

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context['submit_url'] = reverse(self.url_name,
                                        kwargs=self.kwargs)
        context['cancel_url'] = self.get_success_url()
        return context


class CreateVersionView(FunctionFormView):
    form_class = function_forms.CreateVersionForm
    form_id = 'create_version_form'
    modal_header = page_title = _('Create Version')
    submit_label = _('Create Version')
    url_name = 'horizon:project:functions:create_version'
    tab = 'versions'


class CreateAliasView(FunctionFormView):
    form_class = function_forms.CreateAliasForm
    form_id = 'create_alias_form'
    modal_header = page_title = _('Create Alias')
    submit_label = _('Create Alias')
    url_name = 'horizon:project:functions:create_alias'
    tab = 'aliases'


class UpdateAliasView(FunctionFormView):
    form_class = function_forms.UpdateAliasForm
    form_id = 'update_alias_form'
    modal_header = page_title = _('Point Alias at a Version')
    submit_label = _('Save Changes')
    url_name = 'horizon:project:functions:update_alias'
    tab = 'aliases'

    def get_initial(self):
        alias = common.get_or_404(
            api.alias_get, self.request, self.kwargs['alias_name'],
            function_forms.detail_url(self.function.id, 'aliases'))
        return {'function_id': self.function.id, 'name': alias.name,
                'function_version': str(alias.function_version),
                'description': alias.description}


class CreateWebhookView(FunctionFormView):
    form_class = function_forms.CreateWebhookForm
    form_id = 'create_webhook_form'
    modal_header = page_title = _('Create Webhook')
    submit_label = _('Create Webhook')
    url_name = 'horizon:project:functions:create_webhook'
    tab = 'webhooks'

from django.utils.translation import gettext_lazy as _

from horizon import exceptions
from horizon import tabs

from qinling_dashboard.api import qinling as api
from qinling_dashboard.content.executions import tables as execution_tables
from qinling_dashboard.content.functions import tables


class OverviewTab(tabs.Tab):
    name = _('Overview')
    slug = 'overview'
    template_name = 'qinling/functions/_detail_overview.html'

    def get_context_data(self, request):
        function = self.tab_group.kwargs['function']
        runtime = None
        if function.runtime_id:
            try:
                runtime = api.runtime_get(request, function.runtime_id)
            except Exception:
                exceptions.handle(request,
                                  _('Unable to retrieve the runtime.'))
        return {'function': function, 'runtime': runtime,
                'code': function.code_dict}


def _listed(request, what, call, *args):
    """call(request, *args), or nothing with Horizon's message."""
    try:
        return call(request, *args)
    except Exception:
        exceptions.handle(request, _('Unable to retrieve %s.') % what)
        return []


class VersionsTab(tabs.TableTab):
    name = _('Versions')
    slug = 'versions'
    table_classes = (tables.VersionsTable,)
    template_name = 'horizon/common/_detail_table.html'
    preload = False

    def get_versions_data(self):
        return _listed(self.request, _('versions'), api.version_list,
                       self.tab_group.kwargs['function_id'])


class AliasesTab(tabs.TableTab):
    name = _('Aliases')
    slug = 'aliases'
    table_classes = (tables.AliasesTable,)
    template_name = 'horizon/common/_detail_table.html'
    preload = False

    def get_aliases_data(self):
        return _listed(self.request, _('aliases'), api.alias_list,
                       self.tab_group.kwargs['function_id'])


class WebhooksTab(tabs.TableTab):
    name = _('Webhooks')
    slug = 'webhooks'
    table_classes = (tables.WebhooksTable,)
    template_name = 'horizon/common/_detail_table.html'
    preload = False

    def get_webhooks_data(self):
        # A webhook on an alias names the alias, not the function.
        function_id = self.tab_group.kwargs['function_id']
        aliases = {a.name for a in _listed(self.request, _('aliases'),
                                           api.alias_list, function_id)}
        return [w for w in _listed(self.request, _('webhooks'),
                                   api.webhook_list)
                if w.function_id == function_id or
                w.function_alias in aliases]


class ExecutionsTab(tabs.TableTab):
    name = _('Executions')
    slug = 'executions'
    table_classes = (execution_tables.FunctionExecutionsTable,)
    template_name = 'horizon/common/_detail_table.html'
    preload = False

    def get_executions_data(self):
        function_id = self.tab_group.kwargs['function_id']
        return _listed(self.request, _('executions'),
                       lambda request: api.execution_list(
                           request, function_id=function_id))


class FunctionDetailTabs(tabs.DetailTabsGroup):
    slug = 'function_details'
    tabs = (OverviewTab, VersionsTab, AliasesTab, WebhooksTab, ExecutionsTab)
    sticky = True

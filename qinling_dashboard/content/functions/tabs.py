from django.utils.translation import gettext_lazy as _

from horizon import exceptions
from horizon import tabs

from qinling_dashboard.api import qinling as api
from qinling_dashboard.content import common
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


class VersionsTab(common.ListTab):
    name = _('Versions')
    slug = 'versions'
    table_classes = (tables.VersionsTable,)

    def get_versions_data(self):
        return self.listed(_('versions'), api.version_list,
                           self.tab_group.kwargs['function_id'])


class AliasesTab(common.ListTab):
    name = _('Aliases')
    slug = 'aliases'
    table_classes = (tables.AliasesTable,)

    def get_aliases_data(self):
        return self.listed(_('aliases'), api.alias_list,
                           self.tab_group.kwargs['function_id'])


class WebhooksTab(common.ListTab):
    name = _('Webhooks')
    slug = 'webhooks'
    table_classes = (tables.WebhooksTable,)

    def get_webhooks_data(self):
        # A webhook on an alias names the alias, not the function.
        function_id = self.tab_group.kwargs['function_id']
        aliases = {a.name for a in self.listed(_('aliases'), api.alias_list,
                                               function_id)}
        return [w for w in self.listed(_('webhooks'), api.webhook_list)
                if w.function_id == function_id or
                w.function_alias in aliases]


class ExecutionsTab(common.PagedData, common.ListTab):
    """The function's executions, a page at a time, newest first."""
    name = _('Executions')
    slug = 'executions'
    table_classes = (execution_tables.FunctionExecutionsTable,)

    def get_executions_data(self):
        return self.read_page(api.execution_page, _('executions'),
                              function_id=self.tab_group.kwargs[
                                  'function_id'])


class FunctionDetailTabs(tabs.DetailTabsGroup):
    slug = 'function_details'
    tabs = (OverviewTab, VersionsTab, AliasesTab, WebhooksTab, ExecutionsTab)
    sticky = True

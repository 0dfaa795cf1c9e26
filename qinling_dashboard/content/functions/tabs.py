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


class VersionsTab(tabs.TableTab):
    name = _('Versions')
    slug = 'versions'
    table_classes = (tables.VersionsTable,)
    template_name = 'horizon/common/_detail_table.html'
    preload = False

    def get_versions_data(self):
        try:
            return api.version_list(self.request,
                                    self.tab_group.kwargs['function_id'])
        except Exception:
            exceptions.handle(self.request,
                              _('Unable to retrieve versions.'))
            return []


class AliasesTab(tabs.TableTab):
    name = _('Aliases')
    slug = 'aliases'
    table_classes = (tables.AliasesTable,)
    template_name = 'horizon/common/_detail_table.html'
    preload = False

    def get_aliases_data(self):
        try:
            return api.alias_list(self.request,
                                  self.tab_group.kwargs['function_id'])
        except Exception:
            exceptions.handle(self.request, _('Unable to retrieve aliases.'))
            return []


class WebhooksTab(tabs.TableTab):
    name = _('Webhooks')
    slug = 'webhooks'
    table_classes = (tables.WebhooksTable,)
    template_name = 'horizon/common/_detail_table.html'
    preload = False

    def get_webhooks_data(self):
        # A webhook on an alias names the alias, not the function.
        function_id = self.tab_group.kwargs['function_id']
        try:
            aliases = {a.name for a in api.alias_list(self.request,
                                                      function_id)}
            return [w for w in api.webhook_list(self.request)
                    if w.function_id == function_id or
                    w.function_alias in aliases]
        except Exception:
            exceptions.handle(self.request,
                              _('Unable to retrieve webhooks.'))
            return []


class ExecutionsTab(tabs.TableTab):
    name = _('Executions')
    slug = 'executions'
    table_classes = (execution_tables.FunctionExecutionsTable,)
    template_name = 'horizon/common/_detail_table.html'
    preload = False

    def get_executions_data(self):
        try:
            return api.execution_list(
                self.request, function_id=self.tab_group.kwargs['function_id'])
        except Exception:
            exceptions.handle(self.request,
                              _('Unable to retrieve executions.'))
            return []


class FunctionDetailTabs(tabs.DetailTabsGroup):
    slug = 'function_details'
    tabs = (OverviewTab, VersionsTab, AliasesTab, WebhooksTab, ExecutionsTab)
    sticky = True

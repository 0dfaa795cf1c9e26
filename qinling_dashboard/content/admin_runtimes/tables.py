from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext_lazy

from horizon import tables

from qinling_dashboard.api import qinling as api
from qinling_dashboard.content.runtimes import tables as runtime_tables

SCOPE = 'function-engine'


class CreateRuntime(tables.LinkAction):
    name = 'create'
    verbose_name = _('Create Runtime')
    url = 'horizon:admin:runtimes:create'
    classes = ('ajax-modal',)
    icon = 'plus'
    policy_rules = ((SCOPE, 'runtime:create'),)


class UpdateRuntime(tables.LinkAction):
    name = 'update'
    verbose_name = _('Update Runtime')
    url = 'horizon:admin:runtimes:update'
    classes = ('ajax-modal',)
    icon = 'pencil'
    policy_rules = ((SCOPE, 'runtime:update'),)


class DeleteRuntime(tables.DeleteAction):
    policy_rules = ((SCOPE, 'runtime:delete'),)

    @staticmethod
    def action_present(count):
        return ngettext_lazy('Delete Runtime', 'Delete Runtimes', count)

    @staticmethod
    def action_past(count):
        return ngettext_lazy('Deleted Runtime', 'Deleted Runtimes', count)

    def delete(self, request, obj_id):
        api.runtime_delete(request, obj_id)


class UpdateRow(tables.Row):
    ajax = True

    def get_data(self, request, runtime_id):
        return api.runtime_get(request, runtime_id)


class AdminRuntimesTable(runtime_tables.RuntimesTable):
    project = tables.Column('project_id', verbose_name=_('Project'))

    class Meta(object):
        name = 'runtimes'
        verbose_name = _('Runtimes')
        status_columns = ('status',)
        row_class = UpdateRow
        table_actions = (CreateRuntime, DeleteRuntime)
        row_actions = (UpdateRuntime, DeleteRuntime)

from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext_lazy

from horizon import tables

from qinling_dashboard.content import common
from qinling_dashboard.content.runtimes import tables as runtime_tables

SCOPE = common.POLICY_SCOPE


class CreateRuntime(common.ModalLink):
    name = 'create'
    verbose_name = _('Create Runtime')
    url = 'horizon:admin:runtimes:create'
    policy_rules = ((SCOPE, 'runtime:create'),)


class UpdateRuntime(common.ModalLink):
    name = 'update'
    verbose_name = _('Update Runtime')
    url = 'horizon:admin:runtimes:update'
    icon = 'pencil'
    policy_rules = ((SCOPE, 'runtime:update'),)


class DeleteRuntime(common.ApiDeleteAction):
    policy_rules = ((SCOPE, 'runtime:delete'),)
    present = ngettext_lazy('Delete Runtime', 'Delete Runtimes', 'count')
    past = ngettext_lazy('Deleted Runtime', 'Deleted Runtimes', 'count')
    api_call = 'runtime_delete'


class UpdateRow(common.PolledRow):
    api_get = 'runtime_get'


class AdminRuntimesTable(runtime_tables.RuntimesTable):
    project = tables.Column('project_id', verbose_name=_('Project'))

    class Meta(object):
        name = 'runtimes'
        verbose_name = _('Runtimes')
        status_columns = ('status',)
        row_class = UpdateRow
        table_actions = (CreateRuntime, DeleteRuntime)
        row_actions = (UpdateRuntime, DeleteRuntime)

from django.template import defaultfilters
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext_lazy
from django.utils.translation import pgettext_lazy

from horizon import tables
from horizon.utils import filters

from qinling_dashboard.content import common

# running: not ended, so the row keeps refreshing (horizon.ajax polling).
STATUS_CHOICES = (
    ('success', True),
    ('failed', False),
    ('error', False),
    ('running', None),
)
STATUS_DISPLAY = (
    ('success', pgettext_lazy('Execution status', 'Success')),
    ('failed', pgettext_lazy('Execution status', 'Failed')),
    ('error', pgettext_lazy('Execution status', 'Error')),
    ('running', pgettext_lazy('Execution status', 'Running')),
)


class RunFunction(common.ModalLink):
    name = 'create'
    verbose_name = _('Run Function')
    url = 'horizon:project:executions:create'
    icon = 'play'


class DeleteExecution(common.ApiDeleteAction):
    present = ngettext_lazy('Delete Execution', 'Delete Executions', 'count')
    past = ngettext_lazy('Deleted Execution', 'Deleted Executions', 'count')
    api_call = 'execution_delete'


class ExecutionFilter(tables.FilterAction):
    filter_type = 'server'
    filter_choices = (
        ('status', _('Status ='), True,
         _('success, failed, error or running')),
        ('function_id', _('Function ID ='), True),
    )


class UpdateRow(common.PolledRow):
    api_get = 'execution_get'


def _function_link(execution):
    if not execution.function_id:
        return None
    return reverse('horizon:project:functions:detail',
                   args=[execution.function_id])


def _target(execution):
    if execution.function_alias:
        return _('alias %s') % execution.function_alias
    return _('version %s') % (execution.function_version or 0)


def _duration(execution):
    if execution.duration is None:
        return '-'
    return '%s s' % execution.duration


class ExecutionsTable(tables.DataTable):
    id = tables.WrappingColumn('id', verbose_name=_('ID'),
                               link='horizon:project:executions:detail')
    function = tables.Column('function_id', verbose_name=_('Function'),
                             link=_function_link)
    target = tables.Column(_target, verbose_name=_('Runs'))
    status = tables.Column('status', verbose_name=_('Status'), status=True,
                           status_choices=STATUS_CHOICES,
                           display_choices=STATUS_DISPLAY)
    sync = tables.Column('sync', verbose_name=_('Sync'),
                         filters=(defaultfilters.yesno,
                                    defaultfilters.capfirst))
    duration = tables.Column(_duration, verbose_name=_('Duration'))
    created = tables.Column('created_at', verbose_name=_('Created'),
                            filters=(filters.parse_isotime,))

    class Meta(object):
        name = 'executions'
        verbose_name = _('Executions')
        status_columns = ('status',)
        row_class = UpdateRow
        table_actions = (ExecutionFilter, RunFunction, DeleteExecution)
        row_actions = (DeleteExecution,)


class RunThisFunction(RunFunction):
    def get_link_url(self, datum=None):
        return '%s?function_id=%s' % (super().get_link_url(datum),
                                      self.table.kwargs['function_id'])


class FunctionExecutionsTable(ExecutionsTable):
    """One function's executions, on its detail page."""

    class Meta(object):
        name = 'executions'
        verbose_name = _('Executions')
        status_columns = ('status',)
        row_class = UpdateRow
        table_actions = (RunThisFunction, DeleteExecution)
        row_actions = (DeleteExecution,)
        columns = ('id', 'target', 'status', 'sync', 'duration', 'created')

from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext_lazy

from horizon import tables

from qinling_dashboard.content import common


class CreateJob(common.ModalLink):
    name = 'create'
    verbose_name = _('Create Job')
    url = 'horizon:project:jobs:create'


class DeleteJob(common.ApiDeleteAction):
    present = ngettext_lazy('Delete Job', 'Delete Jobs', 'count')
    past = ngettext_lazy('Deleted Job', 'Deleted Jobs', 'count')
    api_call = 'job_delete'


def _target(job):
    if job.function_alias:
        return _('alias %s') % job.function_alias
    return job.function_id


class JobsTable(tables.DataTable):
    name = tables.Column(lambda j: j.name or j.id, verbose_name=_('Name'))
    function = tables.Column(_target, verbose_name=_('Runs'))
    pattern = tables.Column('pattern', verbose_name=_('Pattern'))
    status = tables.Column('status', verbose_name=_('Status'))
    count = tables.Column('count', verbose_name=_('Remaining'),
                          empty_value=_('unlimited'))
    first = tables.Column('first_execution_time',
                          verbose_name=_('First Execution'))
    next = tables.Column('next_execution_time',
                         verbose_name=_('Next Execution'))

    class Meta(object):
        name = 'jobs'
        verbose_name = _('Jobs')
        table_actions = (CreateJob, DeleteJob)
        row_actions = (DeleteJob,)

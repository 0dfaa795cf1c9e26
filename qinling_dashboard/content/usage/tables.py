from django.utils.translation import gettext_lazy as _

from horizon import tables


def _seconds(value):
    return '%.3f' % (value or 0)


def _gb_seconds(value):
    # A small function's run is a few thousandths of a GB-second.
    return '%.6f' % (value or 0)


class FunctionUsageTable(tables.DataTable):
    function = tables.Column('function_name', verbose_name=_('Function'),
                             link=lambda u: u.link)
    executions = tables.Column('executions', verbose_name=_('Executions'))
    succeeded = tables.Column('succeeded', verbose_name=_('Succeeded'))
    failed = tables.Column('failed', verbose_name=_('Failed'))
    duration = tables.Column('duration', verbose_name=_('Duration (s)'),
                             filters=(_seconds,))
    cpu_time = tables.Column('cpu_time', verbose_name=_('CPU Time (s)'),
                             filters=(_seconds,))
    gb_seconds = tables.Column('gb_seconds', verbose_name=_('GB-seconds'),
                               filters=(_gb_seconds,))

    def get_object_id(self, datum):
        return datum.function_id

    class Meta(object):
        name = 'function_usage'
        verbose_name = _('Usage per Function')

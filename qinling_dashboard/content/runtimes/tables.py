from django.template import defaultfilters
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from horizon import tables

from qinling_dashboard.content import common

STATUS_CHOICES = (
    ('available', True),
    ('error', False),
    ('creating', None),
    ('upgrading', None),
    ('deleting', None),
)
STATUS_DISPLAY = tuple(
    (s, pgettext_lazy('Runtime status', s.capitalize()))
    for s, _ok in STATUS_CHOICES)


def _pool(runtime):
    pool = getattr(runtime, 'pool', None)
    if not pool:
        return '-'
    capacity = pool.get('capacity') or {}
    return _('%(available)s free of %(total)s') % {
        'available': capacity.get('available', 0),
        'total': capacity.get('total', 0)}


class RuntimesTable(tables.DataTable):
    name = tables.Column(lambda r: r.name or r.id, verbose_name=_('Name'))
    image = tables.Column('image', verbose_name=_('Image'))
    status = tables.Column('status', verbose_name=_('Status'), status=True,
                           status_choices=STATUS_CHOICES,
                           display_choices=STATUS_DISPLAY)
    # The API's policy (pkg/policy/policy.go, as upstream's) lets only
    # admins read a pool, so members get no column of dashes: the status
    # column is what they may know of a runtime.
    pool = tables.Column(_pool, verbose_name=_('Pool'),
                         help_text=_('Prewarmed workers: free of total.'),
                         policy_rules=((common.POLICY_SCOPE,
                                        'runtime_pool:get_all'),))
    public = tables.Column('is_public', verbose_name=_('Public'),
                           filters=(defaultfilters.yesno,
                                    defaultfilters.capfirst))
    trusted = tables.Column('trusted', verbose_name=_('Trusted'),
                            filters=(defaultfilters.yesno,
                                     defaultfilters.capfirst))
    description = tables.Column('description', verbose_name=_('Description'))

    class Meta(object):
        name = 'runtimes'
        verbose_name = _('Runtimes')
        status_columns = ('status',)

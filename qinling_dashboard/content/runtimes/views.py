from django.utils.translation import gettext_lazy as _

from horizon import exceptions
from horizon import tables

from openstack_dashboard import policy

from qinling_dashboard.api import qinling as api
from qinling_dashboard.content import common
from qinling_dashboard.content.runtimes import tables as runtime_tables


def runtimes_with_pools(request):
    """Runtimes, each with its pool where the policy lets the user read it
    (admins: the API refuses members)."""
    try:
        runtimes = api.runtime_list(request)
    except Exception:
        exceptions.handle(request, _('Unable to retrieve runtimes.'))
        return []
    if policy.check(((common.POLICY_SCOPE, 'runtime_pool:get_all'),),
                    request):
        for r in runtimes:
            try:
                r.pool = api.runtime_pool(request, r.id)
            except Exception:
                r.pool = None
    return runtimes


class IndexView(tables.DataTableView):
    table_class = runtime_tables.RuntimesTable
    template_name = 'horizon/common/_data_table_view.html'
    page_title = _('Runtimes')

    def get_data(self):
        return runtimes_with_pools(self.request)

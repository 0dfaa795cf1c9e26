from django.utils.translation import gettext_lazy as _

from openstack_dashboard import policy

from qinling_dashboard.api import qinling as api
from qinling_dashboard.content import common
from qinling_dashboard.content.runtimes import tables as runtime_tables


class IndexView(common.PagedIndexView):
    """Runtimes, newest first, each with its pool where the policy lets the
    user read it (admins: the API refuses members)."""
    table_class = runtime_tables.RuntimesTable
    page_title = _('Runtimes')
    what = _('runtimes')

    def page_call(self):
        return api.runtime_page

    def get_data(self):
        runtimes = super().get_data()
        if policy.check(((common.POLICY_SCOPE, 'runtime_pool:get_all'),),
                        self.request):
            for r in runtimes:
                try:
                    r.pool = api.runtime_pool(self.request, r.id)
                except Exception:
                    r.pool = None
        return runtimes

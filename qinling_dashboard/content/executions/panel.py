from django.utils.translation import gettext_lazy as _

import horizon


class Executions(horizon.Panel):
    name = _("Executions")
    slug = 'executions'
    permissions = ('openstack.services.function-engine',)

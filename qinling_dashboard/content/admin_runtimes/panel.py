from django.utils.translation import gettext_lazy as _

import horizon


class Runtimes(horizon.Panel):
    name = _("Function Runtimes")
    slug = 'runtimes'
    permissions = ('openstack.services.function-engine',)
    policy_rules = (('function-engine', 'runtime:create'),)

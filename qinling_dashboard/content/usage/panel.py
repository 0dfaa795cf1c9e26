from django.utils.translation import gettext_lazy as _

import horizon


class Usage(horizon.Panel):
    name = _("Usage")
    slug = 'function_usage'
    permissions = ('openstack.services.function-engine',)

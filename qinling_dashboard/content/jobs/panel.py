from django.utils.translation import gettext_lazy as _

import horizon


class Jobs(horizon.Panel):
    name = _("Jobs")
    slug = 'jobs'
    permissions = ('openstack.services.function-engine',)

from django.utils.translation import gettext_lazy as _

import horizon


class Functions(horizon.Panel):
    name = _("Functions")
    slug = 'functions'
    # Shown only where the catalog has the function service.
    permissions = ('openstack.services.function-engine',)

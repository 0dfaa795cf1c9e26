# The "Functions" group of the project dashboard. Copy every file of this
# folder into openstack_dashboard/local/enabled/ (docs/dashboard.md).
from django.utils.translation import gettext_lazy as _

from qinling_dashboard import exceptions

PANEL_GROUP = 'functions'
PANEL_GROUP_NAME = _('Functions')
PANEL_GROUP_DASHBOARD = 'project'

ADD_INSTALLED_APPS = ['qinling_dashboard']
# Horizon's exception handling: 401 logs the user out, 404 is not found,
# every other API error a message carrying the server's faultstring.
ADD_EXCEPTIONS = {
    'recoverable': (exceptions.QinlingRecoverable,),
    'not_found': (exceptions.QinlingNotFound,),
    'unauthorized': (exceptions.QinlingUnauthorized,),
}

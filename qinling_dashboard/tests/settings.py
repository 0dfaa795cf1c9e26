"""Django settings for the plugin's unit tests: Horizon's test settings
with the plugin's enabled/ files and policy file added."""

import os

from openstack_dashboard.test.settings import *  # noqa: F401,F403
from openstack_dashboard.utils import settings as settings_utils

import openstack_dashboard.enabled
import qinling_dashboard
import qinling_dashboard.enabled

settings_utils.update_dashboards(
    [openstack_dashboard.enabled, qinling_dashboard.enabled],
    HORIZON_CONFIG,  # noqa: F405
    INSTALLED_APPS,  # noqa: F405
)
# The core apps were added once already by Horizon's test settings.
INSTALLED_APPS = list(dict.fromkeys(INSTALLED_APPS))  # noqa: F405

POLICY_FILES['function-engine'] = os.path.join(  # noqa: F405
    os.path.dirname(qinling_dashboard.__file__), 'conf',
    'function-engine_policy.yaml')

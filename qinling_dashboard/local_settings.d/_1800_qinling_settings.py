# Horizon settings snippet for qinling_dashboard: copy it into
# openstack_dashboard/local/local_settings.d/. Horizon execs it inside its
# settings module, where POLICY_FILES is defined.
import os as _os

import qinling_dashboard as _qd

POLICY_FILES['function-engine'] = _os.path.join(  # noqa: F821
    _os.path.dirname(_qd.__file__), 'conf', 'function-engine_policy.yaml')

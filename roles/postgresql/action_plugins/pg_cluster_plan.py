# -*- coding: utf-8 -*-
# Copyright: hastack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pg_cluster_plan on the controller, in Ansible's own process.

The decision is a pure function of the facts every node reported (module_utils/
hastack_plan.py); running it as a module on localhost forked a Python interpreter and
shipped an AnsiballZ payload for nothing: 0.5-1.2 s on the critical path of every
failover (docs/BENCHMARKS.md). This plugin takes the same arguments, validated with the
module's own spec, and returns the same result; library/pg_cluster_plan.py keeps the
documentation and runs wherever this plugin is not on the path. Ansible finds it because
the playbooks that decide import the postgresql role (a role's action_plugins/ joins the
search path when the role loads).
"""

from __future__ import annotations

import importlib.util
import os
import sys

from ansible import constants as C
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase

# The shared code imports its siblings as ansible.module_utils.<name>, which only the
# module packager resolves; on the controller they are loaded from the configured
# module_utils folders under the same names, dependencies first.
_SHARED = ("hastack_lsn", "hastack_state", "hastack_plan")


def _module_utils_dirs():
    here = os.path.dirname(os.path.abspath(__file__))
    configured = [os.path.expanduser(p) for p in (C.config.get_config_value("DEFAULT_MODULE_UTILS_PATH") or [])]
    return configured + [os.path.normpath(os.path.join(here, "..", "..", "..", "module_utils"))]


def load_plan():
    name = "ansible.module_utils.hastack_plan"
    if name in sys.modules:
        return sys.modules[name]
    for directory in _module_utils_dirs():
        if all(os.path.isfile(os.path.join(directory, shared + ".py")) for shared in _SHARED):
            break
    else:
        raise ImportError("hastack's module_utils (%s) not found in %s" % (", ".join(_SHARED), _module_utils_dirs()))
    for shared in _SHARED:
        full = "ansible.module_utils." + shared
        if full in sys.modules:
            continue
        spec = importlib.util.spec_from_file_location(full, os.path.join(directory, shared + ".py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[full] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[full]
            raise
    return sys.modules[name]


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        plan = load_plan()
        validated = ArgumentSpecValidator(plan.PLAN_ARGUMENT_SPEC, required_if=plan.PLAN_REQUIRED_IF).validate(
            self._task.args)
        if validated.error_messages:
            result.update(failed=True, msg="pg_cluster_plan: " + "; ".join(validated.error_messages))
            return result
        params = validated.validated_parameters
        try:
            decision = plan.decide(params)
        except plan.PlanError as exc:
            result.update(failed=True, msg="%s: %s" % (params["mode"], exc))
            return result
        result.update(changed=False, plan=decision)
        return result

"""Render a role's template the way ansible.builtin.template would, with the role's
defaults resolved against the given inventory values (plain Jinja2, no Ansible run)."""

import re

import jinja2
import yaml
from jinja2.nativetypes import NativeEnvironment


def render_role_template(role, template, values, overrides, filters=None):
    """role: the role's folder; template: path below its templates/; values: the inventory
    and facts the template sees; overrides: variables set instead of the role's defaults."""
    # trim_blocks as in ansible.builtin.template.
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True)  # noqa: S701
    native = NativeEnvironment()  # defaults keep their types, as in Ansible
    for environment in (env, native):
        environment.tests["match"] = lambda value, pattern: re.match(pattern, value) is not None
        environment.filters.update(filters or {})
    values = dict(values, **overrides)
    defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text(encoding="utf-8"))
    for _ in range(3):  # defaults refer to each other
        for name, value in defaults.items():
            if name not in overrides:
                templated = isinstance(value, str) and "{{" in value
                values[name] = native.from_string(value).render(values) if templated else value
    return env.from_string((role / "templates" / template).read_text(encoding="utf-8")).render(values)

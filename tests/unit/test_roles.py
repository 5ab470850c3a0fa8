"""Every role documents and validates its variables (house style, enforced)."""

import pathlib
import re

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
ROLES = sorted(p for p in (ROOT / "roles").iterdir() if p.is_dir())


def load(path):
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle) or {}


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_role_has_argument_specs_for_every_default(role):
    defaults = load(role / "defaults" / "main.yml")
    specs = load(role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    assert set(defaults) <= set(specs), f"undocumented in argument_specs: {sorted(set(defaults) - set(specs))}"


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_role_variables_are_prefixed_with_the_role_name(role):
    defaults = load(role / "defaults" / "main.yml")
    specs = load(role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    prefix = role.name + "_"
    bad = sorted(name for name in set(defaults) | set(specs) if not name.startswith(prefix))
    assert not bad, f"variables without the {prefix} prefix: {bad}"


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_role_main_only_includes(role):
    tasks = load(role / "tasks" / "main.yml")
    assert isinstance(tasks, list)
    for task in tasks:
        actions = {k for k in task if k.startswith("ansible.builtin.")}
        assert actions <= {"ansible.builtin.import_tasks", "ansible.builtin.include_tasks"}, task


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_role_defaults_hold_no_secret(role):
    defaults = load(role / "defaults" / "main.yml")
    for name, value in defaults.items():
        if name.endswith(("_password", "_secret", "_token")):
            # Empty, from vault, or taken from another role's variable of the same kind.
            assert value in ("", None) or "vault_" in str(value) or re.match(r"^\{\{\s*\w+_password\b", str(value)), \
                f"{name} has a default secret"


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_templates_mirror_target_paths(role):
    templates = role / "templates"
    if not templates.exists():
        pytest.skip("no templates")
    for template in templates.rglob("*.j2"):
        relative = template.relative_to(templates)
        assert relative.parts[0] in {"etc", "usr", "var", "opt", "srv", "home", "root"}, relative


def test_no_set_filters_where_order_matters():
    """difference/union/intersect return items in hash order, which changes from one
    ansible-playbook run to the next: a rendered file would change on every run."""
    offenders = []
    for path in list((ROOT / "roles").rglob("*.j2")) + list((ROOT / "roles").rglob("*.yml")) \
            + list((ROOT / "playbooks").rglob("*")):
        if path.is_file() and re.search(r"\|\s*(difference|union|intersect)\(", path.read_text(encoding="utf-8")):
            offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, offenders


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_documented_defaults_match_the_role_defaults(role):
    defaults = load(role / "defaults" / "main.yml")
    specs = load(role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]

    def norm(value):
        return " ".join(value.split()) if isinstance(value, str) else value

    # A templated default may be documented by what it usually resolves to.
    literal = {name: value for name, value in defaults.items() if "{{" not in str(value)}
    wrong = sorted(name for name, spec in specs.items()
                   if "default" in spec and name in literal and norm(spec["default"]) != norm(literal[name]))
    assert not wrong, f"argument_specs default differs from defaults/main.yml: {wrong}"

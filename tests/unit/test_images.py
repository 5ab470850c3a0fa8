"""The cluster image (scripts/build-image.sh) holds every package the roles install, so
Molecule scenarios that boot it never download one; the `default` scenario still proves
the roles install them on the bare image."""

import pathlib
import re

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
PACKAGES = ROOT / "scripts" / "cluster-packages.txt"


def load(path):
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle) or {}


def image_packages():
    lines = (line.split("#", 1)[0].strip() for line in PACKAGES.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and line not in ("recommends", "no-recommends")]


def render(name, defaults):
    """A package name with the defaults it names filled in: "postgresql-{{ postgresql_version }}",
    "{{ postgresql_version | default(15) }}" (a default that names another default, too)."""
    def value(match):
        return str(defaults.get(match.group(1), match.group(2)))
    while "{{" in name:
        name = re.sub(r"\{\{\s*(\w+)\s*(?:\|\s*default\(([^)]*)\)\s*)?\}\}", value, name)
    return name


def role_packages():
    """Every package a role's apt tasks install: literal lists, or a list from the role's defaults."""
    found, defaults = {}, {}
    roles = sorted(p for p in (ROOT / "roles").iterdir() if (p / "tasks").is_dir())
    for role in roles:
        if (role / "defaults" / "main.yml").exists():
            defaults.update(load(role / "defaults" / "main.yml"))
    for role in roles:
        for tasks_file in sorted((role / "tasks").glob("*.yml")):
            for task in load(tasks_file) or []:
                apt = task.get("ansible.builtin.apt") if isinstance(task, dict) else None
                if not apt or "name" not in apt:
                    continue
                names = apt["name"] if isinstance(apt["name"], list) else [apt["name"]]
                for name in names:
                    whole = re.fullmatch(r"\{\{\s*(.+?)\s*\}\}", name)
                    if whole:  # "{{ common_packages + common_packages_extra }}"
                        listed = [defaults[var] for var in re.findall(r"\w+", whole.group(1)) if var in defaults]
                        for package in (p for values in listed for p in values):
                            found.setdefault(package, f"{role.name}/defaults")
                    else:
                        found.setdefault(render(name, defaults), f"{role.name}/tasks/{tasks_file.name}")
    return found


def test_the_role_package_scan_sees_the_roles():
    found = role_packages()
    assert {"chrony", "keepalived", "postgresql-15", "python3-venv"} <= set(found)


def test_cluster_image_holds_every_package_the_roles_install():
    missing = {package: where for package, where in role_packages().items() if package not in image_packages()}
    assert not missing, (f"add to scripts/cluster-packages.txt (the Molecule cluster image) what the roles now "
                         f"install: {missing}")


def test_cluster_image_list_names_each_package_once():
    packages = image_packages()
    assert len(packages) == len(set(packages))

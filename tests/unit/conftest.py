import importlib
import pathlib
import sys

# Modules import shared code as ansible.module_utils.<name>; tests import it from the
# repository directly, and the shared files that import each other find the same copy.
ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
_pending = sorted(p.stem for p in (ROOT / "module_utils").glob("hastack_*.py"))
while _pending:
    for _name in list(_pending):
        try:
            sys.modules["ansible.module_utils." + _name] = importlib.import_module("module_utils." + _name)
        except ModuleNotFoundError as exc:
            if not str(exc.name).startswith("ansible.module_utils.hastack_"):
                raise
            sys.modules.pop("module_utils." + _name, None)  # imports a sibling not loaded yet
            continue
        _pending.remove(_name)

import importlib
import pathlib
import sys

# Modules import shared code as ansible.module_utils.<name>; tests import it from the
# repository directly, and the shared files that import each other find the same copy.
ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
# hastack_quorum imports nothing of ours, so it goes first.
for _name in sorted((p.stem for p in (ROOT / "module_utils").glob("hastack_*.py")), key=lambda n: n != "hastack_quorum"):
    sys.modules.setdefault("ansible.module_utils." + _name, importlib.import_module("module_utils." + _name))

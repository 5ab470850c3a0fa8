import pathlib
import sys

# Modules import shared code as ansible.module_utils.<name>; tests import it from the
# repository directly.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

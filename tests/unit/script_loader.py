"""Load a script the roles ship without a .py suffix (hastack-backup, hastack-file-sync,
...) as a module, for the unit tests. Each call gives a fresh module object."""

import importlib.machinery
import importlib.util
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]


def load_script(name, path):
    """The file at path (absolute, or relative to the repository) as module `name`."""
    loader = importlib.machinery.SourceFileLoader(name, str(ROOT / path))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader))
    loader.exec_module(module)
    return module

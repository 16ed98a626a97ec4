"""Import a program the deploy installs on the host from its file under files/: such files are
not a package (and some have no .py suffix), so they cannot be imported by name."""

import importlib.machinery
import importlib.util
import sys
from types import ModuleType

from tasks import REPO


def load_file(path: str, name: str) -> ModuleType:
    """files/<...> (relative to the repository) as the module `name`."""
    loader = importlib.machinery.SourceFileLoader(name, str(REPO / path))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader))
    sys.modules[name] = module  # dataclasses look their module up there
    loader.exec_module(module)
    return module

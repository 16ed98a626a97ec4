"""The deploy's stages, one module per concern (deploy.py lists them in order)."""

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]  # the repository root: templates/, files/, group_data/


def host_module(name: str, folder: str = "files/updates"):
    """A stdlib module the deploy installs on the host (<folder>/<name>.py), imported here too, so
    the deploy and the host share one grammar (image references, the update window)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / folder / f"{name}.py")
        sys.modules[name] = importlib.util.module_from_spec(spec)  # dataclasses look their module up there
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]

"""deploy.py's stages, read from its source, and the code of its first N of them.

tests/lab/deploy_prefix.py runs that code as a pyinfra deploy file, so the lab can prove the
zero-change guarantee after every stage without a copy of deploy.py's code: a stage added,
removed or reordered in deploy.py is what the next run of the test deploys.

A stage is a top-level expression statement of deploy.py that calls a bare name imported from a
`tasks.*` module (`from tasks.base import base` ... `base()`) where that name is a pyinfra
`@deploy` function. Everything else is not a stage: the prelude before the first stage (imports,
`tcp_nodelay()`, `settings.require_defaults(...)`, `settings.validate(...)`) is in every prefix,
and any other statement between two stages goes with the stage it follows.
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import CodeType

from pyinfra.api.exceptions import PyinfraError

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy.py"
ENV = "GITEA_DEPLOY_STAGES"  # how many of deploy.py's stages tests/lab/deploy_prefix.py runs


@dataclass(frozen=True)
class Stage:
    name: str  # the name deploy.py calls (`base`)
    deploy_name: str  # the name given to @deploy, which prefixes its ops' names ("Base system")
    line: int  # the call's line in deploy.py
    index: int  # the call's position in deploy.py's module body


def is_deploy(obj) -> bool:
    """A function wrapped by pyinfra's @deploy(...): the wrapper carries the decorator's name and
    the function it wraps (pyinfra/api/deploy.py)."""
    return callable(obj) and isinstance(getattr(obj, "deploy_name", None), str) and hasattr(obj, "_inner")


def parse(path: Path = DEPLOY) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _from_tasks(tree: ast.Module) -> dict[str, tuple[str, str]]:
    """Local name -> (module, attribute) of each top-level `from tasks.X import attribute [as name]`."""
    names = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("tasks."):
            for alias in node.names:
                names[alias.asname or alias.name] = (node.module, alias.name)
    return names


def stages(path: Path = DEPLOY) -> list[Stage]:
    """deploy.py's stage calls, in order."""
    tree = parse(path)
    imported = _from_tasks(tree)
    found = []
    for index, node in enumerate(tree.body):
        call = node.value if isinstance(node, ast.Expr) else None
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id in imported):
            continue
        module, attribute = imported[call.func.id]
        function = getattr(importlib.import_module(module), attribute)
        if is_deploy(function):
            found.append(Stage(call.func.id, function.deploy_name, node.lineno, index))
    return found


def wanted(environ: Mapping[str, str], found: list[Stage]) -> int:
    """N from the environment, checked against the stages deploy.py has; a clear error otherwise."""
    names = ", ".join(stage.name for stage in found)
    want = f"1..{len(found)} (deploy.py's stages: {names})"
    raw = environ.get(ENV)
    if raw is None or not raw.strip():
        raise PyinfraError(f"{ENV} is not set: tests/lab/deploy_prefix.py deploys deploy.py's first {ENV} stages, "
                           f"give {want}")
    try:
        n = int(raw)
    except ValueError:
        raise PyinfraError(f"{ENV}={raw!r} is not a number: give {want}") from None
    if not 1 <= n <= len(found):
        raise PyinfraError(f"{ENV}={n}: deploy.py has {len(found)} stages, give {want}")
    return n


def prefix(n: int, path: Path = DEPLOY) -> ast.Module:
    """deploy.py's module body up to and including its Nth stage call."""
    found = stages(path)
    if not 1 <= n <= len(found):
        raise PyinfraError(f"{n} stages: deploy.py has {len(found)}, give 1..{len(found)}")
    tree = parse(path)
    tree.body = tree.body[: found[n - 1].index + 1]
    return tree


def prefix_code(n: int, path: Path = DEPLOY) -> CodeType:
    """The first N stages, compiled as deploy.py (tracebacks and pyinfra's op order point there)."""
    return compile(prefix(n, path), str(path), "exec")

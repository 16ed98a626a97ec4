"""renovate.json as tests read it, the pins it is meant to find, and Renovate from .tools/renovate
(`make tools`) to run: tests/unit/test_renovate.py and tests/tools/test_renovate_extract.py."""

from __future__ import annotations

import json
import os
import subprocess

from tasks import REPO
from tasks.settings import SETTINGS
from tests.conftest import skip_because

CONFIG = json.loads((REPO / "renovate.json").read_text())
TABLE_PATH = "tasks/settings/table.py"

# Each image setting -> the Renovate depName its pull requests carry; packageRules name these.
IMAGE_PINS = {
    "gitea_image": "docker.gitea.com/gitea",
    "postgres_image": "docker.io/library/postgres",
    "grafana_image": "docker.io/grafana/grafana",
}

TOOLS_BIN = REPO / ".tools" / "renovate" / "node_modules" / ".bin"


def image_tags() -> dict[str, str]:
    """depName -> the tag the settings table holds for it: what Renovate must extract."""
    defaults = {s.name: s.default for s in SETTINGS}
    return {dep: defaults[name].removeprefix(f"{dep}:") for name, dep in IMAGE_PINS.items()}


def renovate(command: str, *args: str, timeout: int, env: dict[str, str] | None = None,
             prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """Run one of Renovate's commands (after `prefix`, e.g. unshare) from the repository root, or skip
    saying why it is missing."""
    if not (TOOLS_BIN / command).exists():
        skip_because(f"Renovate's {command} is not in .tools/renovate: `make tools` installs it "
                     "(it needs npm and the npm registry)")
    # Its node (Renovate wants Node 24) before any other on PATH: the commands' #! asks env for node.
    env = {**(os.environ if env is None else env)}
    env["PATH"] = f"{TOOLS_BIN}{os.pathsep}{env.get('PATH', os.defpath)}"
    return subprocess.run([*prefix, command, *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)

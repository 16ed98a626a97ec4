"""`python -m lab converge NAME`: the production path, against lab hosts.

Runs `pyinfra inventories/lab.py deploy.py` for the host exactly as an operator runs it against
production, then the host checks (tests/host) with the lab's ACME root as the CA to verify
against, then prints how to reach the result.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from lab import REPO

INVENTORY = "inventories/lab.py"


def deploy(name: str | None, *extra: str, inventory: str = INVENTORY, env: dict | None = None,
           deploy_file: str = "deploy.py") -> dict:
    """Run the deploy against one lab host (name None: every host of the inventory); return
    pyinfra's JSON results plus timing. `env`: extra environment (inventories/prod.py's sources);
    `deploy_file`: another deploy file (tests/lab/deploy_prefix.py: the first stages only)."""
    started = time.monotonic()
    limit = ["--limit", name] if name else []
    result = subprocess.run(
        [sys.executable, "-m", "pyinfra", "-y", "--json", inventory, deploy_file, *limit, *extra],
        cwd=REPO, capture_output=True, text=True, env={**os.environ, **(env or {})},
    )
    seconds = time.monotonic() - started
    try:
        results = json.loads(result.stdout)["results"]
    except (json.JSONDecodeError, KeyError):
        results = {"totals": {}}
    results.update(returncode=result.returncode, seconds=seconds, log=result.stderr)
    return results


REMOTE_COMMAND = re.compile(r"Running command on |Attempting upload of ")


def remote_commands(log: str) -> int:
    """Remote commands (and uploads) a deploy run with `--debug` made: pyinfra logs each one."""
    return sum(1 for line in log.splitlines() if REMOTE_COMMAND.search(line))


def facts_loaded(log: str) -> dict[str, int]:
    """fact class -> how often a `--debug` run gathered it (where the remote commands went)."""
    found: dict[str, int] = {}
    for line in log.splitlines():
        if "Loaded fact " in line:
            name = line.split("Loaded fact ", 1)[1].split(" ", 1)[0]
            found[name] = found.get(name, 0) + 1
    return found


def root_ca_file(name: str) -> Path:
    """The lab ACME server's current root, where host checks and operators can use it."""
    from lab import api

    path = REPO / ".lab" / "hosts" / name / "acme-root.pem"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(api.pebble_root(name))
    return path


def host_checks(name: str, *pytest_args: str, inventory: str = INVENTORY, limit: str | None = None,
                env: dict | None = None) -> subprocess.CompletedProcess:
    """tests/host against lab host `name` through `inventory` (its host `limit`, default `name`)."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "tests/host", "-p", "no:cacheprovider", "-q",
         "--inventory", inventory, "--limit", limit or name, "--tls-ca", str(root_ca_file(name)), *pytest_args],
        cwd=REPO, capture_output=True, text=True, env={**os.environ, **(env or {})},
    )


def converge(name: str) -> int:
    from lab import api, environment

    print(f"--> deploying {name} (pyinfra {INVENTORY} deploy.py --limit {name})", flush=True)
    first = deploy(name)
    totals = first.get("totals", {})
    print(f"    {totals.get('success', '?')} changed, {totals.get('no_change', '?')} unchanged, "
          f"{totals.get('error', '?')} failed in {first['seconds']:.0f} s")
    print(f"    {environment.grafana_note(api.state(), name)}")
    if first["returncode"] != 0:
        print(first["log"][-6000:], file=sys.stderr)
        return 1

    print("--> host checks (pytest tests/host)", flush=True)
    checks = host_checks(name)
    print(checks.stdout.strip().splitlines()[-1] if checks.stdout.strip() else checks.stderr[-2000:])
    if checks.returncode != 0:
        print(checks.stdout[-8000:], file=sys.stderr)
        return 1

    print("--> second deploy must change nothing", flush=True)
    second = deploy(name)
    changed = second.get("totals", {}).get("success")
    print(f"    {changed} changed in {second['seconds']:.0f} s")
    if second["returncode"] != 0 or changed != 0:
        print(second["log"][-6000:], file=sys.stderr)
        return 1

    host = api.state()["hosts"][name]
    ca = root_ca_file(name).relative_to(REPO)
    print(f"""
Gitea (lab, {api.state().get('images_mode', 'standin')} images) is up on {name}.
  URL:    https://git.lab.test/   (resolve it to {host['ip']}, e.g.
          curl --cacert {ca} --resolve git.lab.test:443:{host['ip']} https://git.lab.test/api/healthz)
  CA:     {ca}  (the lab ACME server's root; it changes when the host reboots)
  Login:  gitadmin, password: python -m lab ssh {name} sudo cat /srv/gitea/secrets/admin_password
  Admin:  python -m lab ssh {name}
""")
    return 0

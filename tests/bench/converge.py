"""Benchmark (not a test): how long a fresh lab host takes to converge, and what a no-op costs.

    .venv/bin/python tests/bench/converge.py [--keep] [--name HOST]

Prints: host bring-up time, fresh converge time, operations count, no-op redeploy time, the
remote commands of a no-op redeploy (counted in a third run with pyinfra's --debug log, so the
timed run carries no logging), the changed-operation count on the second and third runs (must
be 0) and the drift report's time and exit code on the converged host (0: it matches). Uses its
own lab host (default gitea-lab-bench) and removes it.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from lab import api  # noqa: E402
from lab.converge import INVENTORY, REPO, deploy, facts_loaded, remote_commands  # noqa: E402
from tests.bench.lab_module import own_host_args  # noqa: E402

NAME = "gitea-lab-bench"


def main() -> int:
    args = own_host_args(__doc__, NAME)
    name = args.name

    api.engine()
    api.down([name])
    started = time.monotonic()
    api.up([name])
    bring_up = time.monotonic() - started

    fresh = deploy(name)
    second = deploy(name)
    counted = deploy(name, "--debug")
    started = time.monotonic()
    drift = subprocess.run([sys.executable, "-m", "tasks.drift", INVENTORY, "--limit", name], cwd=REPO,
                           capture_output=True, text=True)
    drift_seconds = time.monotonic() - started
    if not args.keep:
        api.down([name])

    ok = all(r["returncode"] == 0 for r in (fresh, second, counted)) and drift.returncode == 0
    rows = [
        ("lab host bring-up (s)", f"{bring_up:.1f}"),
        ("fresh converge (s)", f"{fresh['seconds']:.1f}"),
        ("operations", fresh["totals"].get("hosts", "?")),
        ("changed on fresh converge", fresh["totals"].get("success", "?")),
        ("no-op redeploy (s)", f"{second['seconds']:.1f}"),
        ("changed on second run", second["totals"].get("success", "?")),
        ("no-op remote commands", remote_commands(counted["log"])),
        ("changed on the counted run", counted["totals"].get("success", "?")),
        ("facts of the counted run", facts_loaded(counted["log"])),
        ("drift report (s)", f"{drift_seconds:.1f}"),
        ("drift report exit (0: matches)", drift.returncode),
        ("images", api.state().get("images_mode", "?") if args.keep else "see `python -m lab status`"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    if not ok:
        failed = [r["log"] for r in (fresh, second, counted) if r["returncode"]] or [drift.stdout + drift.stderr]
        print(failed[0][-3000:], file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

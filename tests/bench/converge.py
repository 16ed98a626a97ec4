"""Benchmark (not a test): how long a fresh lab host takes to converge, and what a no-op costs.

    .venv/bin/python tests/bench/converge.py [--keep]

Prints: host bring-up time, fresh converge time, operations count, no-op redeploy time and the
changed-operation count on the second run (must be 0). Uses its own lab host and removes it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from lab import api  # noqa: E402
from lab.converge import deploy  # noqa: E402

NAME = "gitea-lab-bench"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="leave the host up afterwards")
    args = parser.parse_args()

    api.engine()
    api.down([NAME])
    started = time.monotonic()
    api.up([NAME])
    bring_up = time.monotonic() - started

    fresh = deploy(NAME)
    second = deploy(NAME)
    if not args.keep:
        api.down([NAME])

    ok = fresh["returncode"] == 0 and second["returncode"] == 0
    rows = [
        ("lab host bring-up (s)", f"{bring_up:.1f}"),
        ("fresh converge (s)", f"{fresh['seconds']:.1f}"),
        ("operations", fresh["totals"].get("hosts", "?")),
        ("changed on fresh converge", fresh["totals"].get("success", "?")),
        ("no-op redeploy (s)", f"{second['seconds']:.1f}"),
        ("changed on second run", second["totals"].get("success", "?")),
        ("images", api.state().get("images_mode", "?") if args.keep else "see `python -m lab status`"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    if not ok:
        print(fresh["log"][-3000:] or second["log"][-3000:], file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark (not a test): seconds from each induced fault to the webhook receiving its alert.

    .venv/bin/python tests/bench/alerts.py [--name HOST]

Runs tests/lab/test_alert_faults.py (its faults: the PostgreSQL container stopped, backups gone
stale, a failed systemd unit) on its own lab host (default gitea-lab-bench) and prints the figures
the test measures: fault to webhook for each alert, and the database's recovery to its resolved
message. The host is brought up, deployed and removed by the test's fixtures.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="gitea-lab-bench", help="the lab host to use (default gitea-lab-bench)")
    args = parser.parse_args()
    run = subprocess.run([sys.executable, "-m", "pytest", "-m", "lab", "-q", "-s", "-p", "no:cacheprovider",
                          "tests/lab/test_alert_faults.py"], cwd=REPO, capture_output=True, text=True,
                         env={**os.environ, "GITEA_LAB_ALERT_HOST": args.name})
    figures = [line.strip() for line in run.stdout.splitlines() if " to webhook: " in line]
    for line in figures:
        print(line)
    if run.returncode != 0:
        print(run.stdout[-3000:], run.stderr[-2000:], sep="\n")
    return run.returncode


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark (not a test): what an image update costs users, and how fast a failing one is undone.

    .venv/bin/python tests/bench/updates.py [--name HOST]

Runs tests/lab/test_updates.py on its own lab host (default gitea-lab-bench) and prints the
figures it measures: the longest time healthz through nginx did not pass during a successful
patch update (polled from outside every 0.2 s), the update's own duration, the seconds from the
start of a failing update to the stack healthy again on the previous version (restore included),
and from the failure to GiteaUpdateFailed on the webhook. The host is brought up, deployed and
removed by the test's fixtures.
"""

from __future__ import annotations

import argparse
import sys

from lab_module import run_and_print


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="gitea-lab-bench", help="the lab host to use (default gitea-lab-bench)")
    args = parser.parse_args()
    return run_and_print("tests/lab/test_updates.py", "GITEA_LAB_UPDATES_HOST", args.name, "updates: ")


if __name__ == "__main__":
    sys.exit(main())

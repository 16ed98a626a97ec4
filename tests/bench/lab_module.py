"""What the benchmarks that measure through a lab test share: run one lab test module on a host of
the benchmark's own, and print the figure lines the module prints."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_and_print(module: str, host_variable: str, host: str, marker: str) -> int:
    """pytest -s of `module` with `host_variable`=`host`; print its lines containing `marker`
    (and the end of its output if it failed); its exit status."""
    run = subprocess.run([sys.executable, "-m", "pytest", "-m", "lab", "-q", "-s", "-p", "no:cacheprovider", module],
                         cwd=REPO, capture_output=True, text=True, env={**os.environ, host_variable: host})
    for line in run.stdout.splitlines():
        if marker in line:
            print(line.strip())
    if run.returncode != 0:
        print(run.stdout[-3000:], run.stderr[-2000:], sep="\n")
    return run.returncode


def own_host_args(doc: str, default: str = "gitea-lab-bench") -> argparse.Namespace:
    """The command line of a benchmark that (re)creates a lab host of its own: --name, --keep."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="leave the host up afterwards")
    parser.add_argument("--name", default=default, help=f"the lab host to (re)create and remove (default {default})")
    return parser.parse_args()


def main(doc: str, *runs: tuple[str, str, str]) -> int:
    """A benchmark's command line: --name HOST (default gitea-lab-bench), then run_and_print for
    each (module, host variable, marker) in turn; the first failure's exit status."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--name", default="gitea-lab-bench", help="the lab host to use (default gitea-lab-bench)")
    name = parser.parse_args().name
    statuses = [run_and_print(module, host_variable, name, marker) for module, host_variable, marker in runs]
    return next((status for status in statuses if status), 0)

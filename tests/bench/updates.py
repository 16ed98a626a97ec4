"""Benchmark (not a test): what an image update costs users, and how fast a failing one is undone.

    .venv/bin/python tests/bench/updates.py [--name HOST]

Runs tests/lab/test_updates.py on its own lab host (default gitea-lab-bench) and prints the
figures it measures: the longest time healthz through nginx did not pass during a successful
patch update (polled from outside every 0.2 s), the update's own duration, the seconds from the
start of a failing update to the stack healthy again on the previous version (restore included),
and from the failure to GiteaUpdateFailed on the webhook. Then tests/lab/test_pg_major_upgrade.py on
the same host name: the seconds a PostgreSQL major upgrade (15 -> 17, the lab's small database)
takes, and how long users saw Gitea down during it. The host is brought up, deployed and removed by
each test module's fixtures.
"""

from __future__ import annotations

import sys

import lab_module

if __name__ == "__main__":
    sys.exit(lab_module.main(__doc__, ("tests/lab/test_updates.py", "GITEA_LAB_UPDATES_HOST", "updates: "),
                             ("tests/lab/test_pg_major_upgrade.py", "GITEA_LAB_PGMAJOR_HOST", "pg major upgrade: ")))

"""Benchmark (not a test): seconds from each induced fault to the webhook receiving its alert.

    .venv/bin/python tests/bench/alerts.py [--name HOST]

Runs tests/lab/test_alert_faults.py (its faults: the PostgreSQL container stopped, backups gone
stale, a failed systemd unit) on its own lab host (default gitea-lab-bench) and prints the figures
the test measures: fault to webhook for each alert, and the database's recovery to its resolved
message. The host is brought up, deployed and removed by the test's fixtures.
"""

from __future__ import annotations

import sys

import lab_module

if __name__ == "__main__":
    sys.exit(lab_module.main(__doc__, ("tests/lab/test_alert_faults.py", "GITEA_LAB_ALERT_HOST", " to webhook: ")))

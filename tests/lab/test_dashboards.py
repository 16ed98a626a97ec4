"""Every panel query of files/grafana/dashboards/ returns data from the lab's live Prometheus (the
monitoring stage's, on the converged host's 127.0.0.1:prometheus_port): a dashboard whose metric
names or job labels drifted from the exporters' shows empty panels, and this is where it fails.

Grafana itself need not run (its image is not reachable offline): the queries are what it would
send, with its variables substituted (tests/dashboard_queries.py). The backup panels need the
backup job's textfile metrics, so a host without them runs one backup first.
"""

from __future__ import annotations

import json
import shlex
import time

import pytest

from lab import api
from tasks import backup
from tasks.settings import defaults
from tests.dashboard_queries import dashboards, queries, substitute

pytestmark = pytest.mark.lab

SETTINGS = defaults()
# A fresh host: rate() needs two scrapes, the textfile timers their first run.
DEADLINE = 300


def query(name: str, expr: str) -> tuple[str, list]:
    """Prometheus' instant query inside the host: (status, result)."""
    url = f"http://127.0.0.1:{SETTINGS['prometheus_port']}/api/v1/query"
    cp = api.exec(name, f"curl -sS --max-time 10 --data-urlencode {shlex.quote('query=' + expr)} {url}")
    if cp.returncode != 0:
        return f"curl exit {cp.returncode}: {cp.stderr.strip()}", []
    try:
        answer = json.loads(cp.stdout)
    except json.JSONDecodeError:
        return f"not JSON: {cp.stdout[:200]!r}", []
    if answer.get("status") != "success":
        return f"{answer.get('errorType')}: {answer.get('error')}", []
    return "success", answer["data"]["result"]


@pytest.fixture(scope="module")
def prometheus(converged_host):
    name = converged_host["name"]
    status, _ = query(name, "up")
    if status != "success":
        pytest.fail(f"the lab's Prometheus does not answer on {name}: {status} (the monitoring stage deployed?)")
    metrics = backup.metrics_file(SETTINGS)
    if api.exec(name, ["test", "-s", metrics]).returncode != 0:
        cp = api.exec(name, ["gitea-backup"], timeout=600)
        assert cp.returncode == 0, f"the backup the backup panels need failed:\n{cp.stderr[-2000:]}"
    return name


def test_every_panel_query_returns_data(prometheus):
    pending = {(board["uid"], title, substitute(expr, board))
               for board in dashboards().values() for title, expr in queries(board)}
    answers: dict[tuple[str, str, str], str] = {}
    started = time.monotonic()
    while pending and time.monotonic() - started < DEADLINE:
        for item in sorted(pending):
            status, result = query(prometheus, item[2])
            answers[item] = status if status != "success" else f"{len(result)} series"
            if status == "success" and result:
                pending.discard(item)
        if pending:
            time.sleep(10)
    total = len(answers)
    print(f"{total - len(pending)} of {total} panel queries returned data "
          f"after {time.monotonic() - started:.0f} s")
    assert not pending, "panel queries without data:\n" + "\n".join(
        f"  {uid} / {title}: {expr}  -> {answers[(uid, title, expr)]}" for uid, title, expr in sorted(pending))

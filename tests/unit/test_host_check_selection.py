"""tests/host/conftest.py: a check of a part the host does not have is deselected, never skipped,
so a host check run of any environment reports no skips (tests/lab/test_prod_inventory.py asserts
that of real runs; this covers every optional part without a host)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

INVENTORY = '''
hosts = [
    ("plain", {}),
    ("full", {"database_endpoint": "db.example.internal:5432", "grafana_enabled": True,
              "metrics_namespace": "Gitea", "aws_region": "eu-west-1"}),
]
'''


def collected(tmp_path: Path) -> tuple[set[str], str]:
    path = tmp_path / "inventory.py"
    path.write_text(INVENTORY)
    done = subprocess.run([sys.executable, "-m", "pytest", "tests/host", "--inventory", str(path),
                           "--collect-only", "-q", "-p", "no:cacheprovider"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return {line.strip() for line in done.stdout.splitlines() if "::" in line}, done.stdout


def test_optional_parts_are_deselected_per_host(tmp_path):
    ids, out = collected(tmp_path)

    def has(fragment: str, host: str) -> bool:
        return any(fragment in i and f"[{host}]" in i for i in ids)

    # The stack's own database has an exporter; an external one (RDS) has none.
    assert has("test_the_exporter_role_is_least_privilege", "plain")
    assert not has("test_the_exporter_role_is_least_privilege", "full")
    # The heartbeat needs AWS; Grafana needs its flag.
    assert has("test_heartbeat.py::", "full") and not has("test_heartbeat.py::", "plain")
    assert has("test_listens_on_loopback_only", "full") and not has("test_listens_on_loopback_only", "plain")
    # What a host without the part must not have is checked on every host.
    assert has("test_a_grafana_container_runs_exactly_with_the_flag", "plain")
    assert "deselected" in out

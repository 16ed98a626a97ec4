"""files/updates/gitea_pg_upgrade.py without a host: what it reads from PostgreSQL's tools, what it
refuses before touching anything, and the rollback that puts the old cluster back (also after a
crash at any step). tests/lab/test_pg_major_upgrade.py runs it for real."""

from __future__ import annotations

import json
import sys

import pytest

from tests.unit.load import load_file

for name, folder in (("gitea_backup", "backup"), ("gitea_restore", "backup"), ("gitea_registry", "updates"),
                     ("gitea_window", "updates"), ("gitea_update", "updates")):
    load_file(f"files/{folder}/{name}.py", name)  # what the program imports beside it on the host
job = load_file("files/updates/gitea_pg_upgrade.py", "gitea_pg_upgrade")
update = sys.modules["gitea_update"]

ROLES = """--
-- PostgreSQL database cluster dump
--

SET default_transaction_read_only = off;

--
-- Roles
--

CREATE ROLE gitea;
ALTER ROLE gitea WITH SUPERUSER INHERIT CREATEROLE CREATEDB LOGIN REPLICATION BYPASSRLS PASSWORD 'SCRAM-SHA-256$4096:x';
CREATE ROLE gitea_monitor;
ALTER ROLE gitea_monitor WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS PASSWORD 'SCRAM-SHA-256$4096:y';
CREATE ROLE "Odd""Name";
GRANT pg_monitor TO gitea_monitor WITH INHERIT TRUE GRANTED BY gitea;
"""


@pytest.mark.parametrize(("output", "major"), [
    ("postgres (PostgreSQL) 17.6 (Debian 17.6-0+deb13u1)\n", 17),
    ("postgres (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)", 15),
    ("postgres (PostgreSQL) 18.1 (Debian 18.1-1.pgdg13+2)", 18),
])
def test_the_servers_major(output, major):
    assert job.server_major(output) == major


def test_an_image_without_a_postgres_server_is_no_major():
    with pytest.raises(job.JobError, match="not a PostgreSQL server version"):
        job.server_major("psql (PostgreSQL) is not here")


def test_the_roles_script_leaves_out_only_the_roles_the_new_cluster_has():
    script = job.roles_script(ROLES, {"gitea", "postgres", "Odd\"Name"})
    assert "CREATE ROLE gitea;" not in script and 'CREATE ROLE "Odd""Name";' not in script
    # the password and attributes still come over, and the exporter's role with its membership
    assert "ALTER ROLE gitea WITH SUPERUSER" in script and "CREATE ROLE gitea_monitor;" in script
    assert "GRANT pg_monitor TO gitea_monitor" in script
    assert job.roles_script(ROLES, set()).splitlines() == ROLES.splitlines()


def test_row_counts_are_compared_table_by_table():
    before = job.parse_counts("action|12\nrepository|3\nuser|2\n")
    assert before == {"action": 12, "repository": 3, "user": 2}
    assert job.count_differences(before, dict(before)) == []
    assert job.count_differences(before, {"action": 12, "repository": 2}) == [
        "repository: 3 before, 2 after", "user: 2 before, missing after"]


def test_the_plan_keeps_the_old_cluster_beside_the_new():
    plan = job.upgrade_plan("/srv/gitea", "/srv/gitea/restore", 15, 17, "pg:17", "pg:15", "20261203T140000")
    assert plan["data"] == "/srv/gitea/postgres"
    assert plan["moved"] == "/srv/gitea/postgres.15-20261203T140000"  # same file system: a rename
    assert plan["compose_kept"] == "/srv/gitea/compose.pg15-20261203T140000.yaml"
    assert plan["work"] == "/srv/gitea/restore/pg-upgrade-20261203T140000"


class Config:
    def __init__(self, tmp_path, endpoint=None):
        self.data_root, self.compose_file, self.db_endpoint = str(tmp_path), str(tmp_path / "compose.yaml"), endpoint


class UpdateConfig:
    def __init__(self, tmp_path):
        self.pg_upgrade_file = str(tmp_path / "pg-upgrade.json")


def refused_before_touching(monkeypatch, calls: list):
    for name in ("backup", "Stack"):
        monkeypatch.setattr(job, name, lambda *a, _n=name, **k: calls.append(_n))


def test_an_external_database_is_refused(tmp_path, monkeypatch):
    calls = []
    refused_before_touching(monkeypatch, calls)
    with pytest.raises(job.JobError, match="external .RDS."):
        job.upgrade(Config(tmp_path, "db.rds:5432"), UpdateConfig(tmp_path), "pg:17")
    assert calls == []


def test_an_upgrade_left_unfinished_must_be_rolled_back_first(tmp_path, monkeypatch):
    calls = []
    refused_before_touching(monkeypatch, calls)
    (tmp_path / "pg-upgrade.json").write_text("{}")
    with pytest.raises(job.JobError, match="gitea-pg-upgrade rollback"):
        job.upgrade(Config(tmp_path), UpdateConfig(tmp_path), "pg:17")
    assert calls == []


@pytest.mark.parametrize("new", [15, 14])
def test_only_a_higher_major_is_an_upgrade(tmp_path, monkeypatch, new):
    calls = []
    refused_before_touching(monkeypatch, calls)
    (tmp_path / "postgres").mkdir()
    (tmp_path / "postgres/PG_VERSION").write_text("15\n")
    monkeypatch.setattr(job, "images", lambda path: {"db": "pg:15"})
    monkeypatch.setattr(job, "image_major", lambda image: new)
    with pytest.raises(job.JobError, match=f"is PostgreSQL {new} and the data is PostgreSQL 15.*nothing was changed"):
        job.upgrade(Config(tmp_path), UpdateConfig(tmp_path), "pg:x")
    assert calls == ["Stack"]  # only constructed: no backup, no compose command


class FakeStack:
    def __init__(self):
        self.calls = []

    def compose(self, *args, **kw):
        self.calls.append(args)

    checked = compose


@pytest.mark.parametrize("crashed_after", ["plan", "rename", "new-cluster"])
def test_put_back_restores_the_old_cluster_from_any_step(tmp_path, monkeypatch, crashed_after):
    """What `rollback` finds after a crash: the plan written, then maybe the old directory moved,
    maybe a new cluster made and the compose file rewritten. Each ends with the old one in place."""
    monkeypatch.setattr(job, "fsync_directory", lambda path: None)
    plan = job.upgrade_plan(str(tmp_path), str(tmp_path / "restore"), 15, 17, "pg:17", "pg:15", "T")
    (tmp_path / "postgres").mkdir()
    (tmp_path / "postgres/PG_VERSION").write_text("15\n")
    (tmp_path / "compose.yaml").write_text('image: "pg:15"\n')
    plan_file = tmp_path / "pg-upgrade.json"
    plan_file.write_text(json.dumps(plan))
    if crashed_after != "plan":
        (tmp_path / "compose.pg15-T.yaml").write_text('image: "pg:15"\n')
        (tmp_path / "postgres").rename(plan["moved"])
    if crashed_after == "new-cluster":
        (tmp_path / "postgres").mkdir()
        (tmp_path / "postgres/PG_VERSION").write_text("17\n")
        (tmp_path / "compose.yaml").write_text('image: "pg:17"\n')
    stack = FakeStack()
    job.put_back(Config(tmp_path), stack, plan, str(plan_file))
    assert (tmp_path / "postgres/PG_VERSION").read_text() == "15\n"
    assert (tmp_path / "compose.yaml").read_text() == 'image: "pg:15"\n'
    assert not plan_file.exists() and not (tmp_path / "postgres.15-T").exists()
    assert stack.calls[0][:3] == ("rm", "--stop", "--force") and stack.calls[-1][:3] == ("up", "-d", "--wait")


def test_the_compose_file_is_rewritten_only_in_the_db_image():
    text = 'services:\n  db:\n    image: "reg/pg:15"\n  gitea:\n    image: "reg/gitea:1.27.3"\n'
    assert update.with_images(text, {"db": ("reg/pg:15", "reg/pg:17")}) == text.replace("pg:15", "pg:17")

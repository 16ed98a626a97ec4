"""The first administrator's check (tasks/gitea.py GiteaAdmins and admin_needed): a Gitea that
cannot be asked is neither "no administrators" nor a crash. The fact's command runs here in sh
with a fake `docker` that plays `docker compose exec gitea gitea admin user list --admin`, through
tasks/snapshot.py's concurrent look as a deploy asks it; the drift report runs the real deploy
against pyinfra's @fake connector (every command answers nothing)."""

from __future__ import annotations

import os
import subprocess
import textwrap
from types import SimpleNamespace

import pytest

from tasks import REPO, drift, gitea, snapshot
from tasks.gitea import GiteaAdmins

LIST = "docker compose -f /srv/gitea/compose.yaml exec -T gitea gitea admin user list --admin"
TABLE = "ID   Username Email             IsActive\n1    gitadmin admin@example.com true\n2    second   two@example.com   true\n"
NOT_RUNNING = 'service "gitea" is not running'


@pytest.fixture
def docker(tmp_path, monkeypatch):
    """A fake `docker` on PATH: prints TABLE, or with FAIL set fails as Compose does for a stopped
    service (its reason on stderr, exit 1)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "docker"
    fake.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        if [ -n "$FAIL" ]; then echo '{NOT_RUNNING}' >&2; exit 1; fi
        printf '%s' '{TABLE}'
        """))
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return monkeypatch


def answer(fact, command: str):
    """What pyinfra makes of the command's output: process() of its lines, default() when it printed
    none (pyinfra's _get_fact, and snapshot.system's concurrent look)."""
    lines = subprocess.run(["sh", "-c", command], capture_output=True, text=True).stdout.splitlines()
    return fact.process(lines) if lines else fact.default()


class LocalHost:
    """pyinfra's `host` as tasks/snapshot.py uses it, answering each fact by running its command here."""

    name = "local"

    def __init__(self):
        self.state = SimpleNamespace(ops={})
        self.logged: list[str] = []

    def get_fact(self, fact, **kwargs):
        return answer(fact(), str(fact().command(**kwargs)))

    def log_styled(self, message, **_):
        self.logged.append(message)


@pytest.fixture
def local(monkeypatch):
    fake = LocalHost()
    monkeypatch.setattr(snapshot, "host", fake)
    monkeypatch.setattr(snapshot, "_registry", {})
    monkeypatch.setattr(snapshot, "_looks", {})
    return fake


def test_the_administrators_are_read_from_gitea_table(docker):
    assert answer(GiteaAdmins(), GiteaAdmins().command(LIST)) == ["gitadmin", "second"]


def test_a_failed_exec_is_not_an_empty_list_of_administrators(docker):
    docker.setenv("FAIL", "1")
    found = answer(GiteaAdmins(), GiteaAdmins().command(LIST))
    assert not isinstance(found, list), f"a failed exec read as the administrators {found!r}"
    assert isinstance(found, snapshot.Unanswered)
    assert NOT_RUNNING in found.reason and "exit 1" in found.reason


def test_no_output_at_all_is_unanswered_too():
    found = GiteaAdmins().default()
    assert isinstance(found, snapshot.Unanswered) and found.reason
    assert isinstance(GiteaAdmins().process(["some warning", "no table"]), snapshot.Unanswered)


def test_the_check_with_a_failed_exec_runs_the_op_and_says_it_could_not_tell(docker, local):
    """Through the deploy's own path (snapshot.system's concurrent look, then admin_needed): the op
    runs (its `gitea admin user create` then makes the missing account, or fails with Gitea's or
    Compose's own message; Gitea refuses a second account of one name), with a warning saying why,
    and the drift report is told it could not be judged."""
    docker.setenv("FAIL", "1")
    needed = gitea.admin_needed("gitadmin", lambda: False, snapshot.system(GiteaAdmins, compose_cmd=LIST))
    assert needed() is True
    reason = snapshot.undecided_reason(local)
    assert reason and "could not be listed" in reason and NOT_RUNNING in reason
    assert any(NOT_RUNNING in line for line in local.logged)
    assert snapshot.undecided_reason(local) is None  # taken once, per op


def test_the_check_with_an_answer_decides_alone(docker, local):
    admins = snapshot.system(GiteaAdmins, compose_cmd=LIST)
    assert gitea.admin_needed("gitadmin", lambda: False, admins)() is False
    assert gitea.admin_needed("newcomer", lambda: False, admins)() is True
    assert gitea.admin_needed("gitadmin", lambda: True, admins)() is True  # a capture to finish
    assert snapshot.undecided_reason(local) is None and local.logged == []


@pytest.mark.parametrize("found", [None, "", {}])
def test_any_answer_but_a_list_is_no_answer(local, found):
    """FactBase's own default is None: `admin in None` was the TypeError the drift report showed."""
    assert gitea.admin_needed("gitadmin", lambda: False, lambda: found)() is True
    assert snapshot.undecided_reason(local)


FAKE_INVENTORY = """
import sys
sys.path.insert(0, {repo!r})
from tests.unit.render import sample_data
hosts = [("@fake/fresh", {{**sample_data(), "fake_delay": 0, "fake_delay_jitter": 0}})]
"""


def test_the_drift_report_cannot_judge_the_administrator_when_gitea_cannot_be_asked(tmp_path, monkeypatch):
    """On a bare host (@fake: no output for any command) Gitea's CLI gives no answer: the report says
    it cannot judge the op, and why, instead of a definite "would create"."""
    inventory = tmp_path / "fake_inventory.py"
    inventory.write_text(FAKE_INVENTORY.format(repo=str(REPO)))
    monkeypatch.setenv("PYINFRA_FAKE_DELAY", "0")
    monkeypatch.setenv("PYINFRA_FAKE_DELAY_JITTER", "0")
    _, hosts, _, log = drift.check(str(inventory), env={"GITEA_DEPLOY_LOCK_FILE": str(tmp_path / "lock")})
    (report,) = hosts.values()
    assert report["status"] == "drift", (report, log[-2000:])  # a bare host: plenty of definite changes
    (admin,) = [c for c in report["changes"] if "Create the first administrator" in c["name"]]
    assert admin.get("definite") is False, admin
    assert "cannot be judged" in admin["follows"] and "administrators could not be listed" in admin["follows"]

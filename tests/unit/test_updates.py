"""tasks/updates.py's decision and gitea_update.py's pure parts: which images run, what is refused.

The sequence itself (backup, pull, up, checks, rollback) runs against real hosts in
tests/lab/test_updates.py.
"""

from __future__ import annotations

import datetime
import json

import pytest
from pyinfra.api.exceptions import DeployError

from tasks import updates
from tests.unit.load import load_file

load_file("files/updates/gitea_registry.py", "gitea_registry")
window = load_file("files/updates/gitea_window.py", "gitea_window")
load_file("files/backup/gitea_backup.py", "gitea_backup")
load_file("files/backup/gitea_restore.py", "gitea_restore")
job = load_file("files/updates/gitea_update.py", "gitea_update")

G = "docker.gitea.com/gitea:{}-rootless"
P = "docker.io/library/postgres:{}-trixie"


def data(**values):
    return {"gitea_image": G.format("1.27.3"), "postgres_image": P.format("17.6"), "data_root": "/srv/gitea",
            "database_endpoint": None, **values}


def seen(gitea=None, db=None, pg=None, **state):
    images = {k: v for k, v in (("gitea", gitea), ("db", db)) if v}
    return updates.Seen(images=images, pg_major=pg, state=state)


def update_config(tmp_path, window: str, reboot: bool):
    """gitea-update's configuration with its files under tmp_path; automatic updates on."""
    return job.UpdateConfig(str(tmp_path / "next"), str(tmp_path / "prev"), str(tmp_path / "state.json"),
                            str(tmp_path / "m.prom"), "git.example.org", "", str(tmp_path / "pg-upgrade.json"), True,
                            window, reboot)


def test_a_fresh_host_takes_the_pins_without_an_update():
    plan = updates.plan(data(), seen())
    assert plan.images == {"gitea": G.format("1.27.3"), "db": P.format("17.6")}
    assert plan.update is False


def test_the_running_images_need_no_update():
    plan = updates.plan(data(), seen(G.format("1.27.3"), P.format("17.6"), 17))
    assert plan.update is False


@pytest.mark.parametrize("pins", [{"gitea_image": G.format("1.27.4")}, {"gitea_image": G.format("1.28.0")},
                                  {"postgres_image": P.format("17.7")}])
def test_a_changed_pin_goes_through_the_updater(pins):
    plan = updates.plan(data(**pins), seen(G.format("1.27.3"), P.format("17.6"), 17))
    assert plan.update is True
    assert plan.images == updates.wanted_images(data(**pins))


def test_an_interrupted_update_is_finished_by_the_updater():
    plan = updates.plan(data(), seen(G.format("1.27.3"), P.format("17.6"), 17, pending={"to": {}}))
    assert plan.update is True


@pytest.mark.parametrize("older", ["1.26.9", "1.26.3", "0.9.0"])
def test_a_gitea_downgrade_is_refused(older):
    with pytest.raises(DeployError, match=r"older than .*1\.27\.3-rootless.*one way.*'Downgrade'.*Nothing was changed"):
        updates.plan(data(gitea_image=G.format(older)), seen(G.format("1.27.3"), P.format("17.6"), 17))


@pytest.mark.parametrize(("pin", "running", "service"), [
    (G.format("1.27.3"), G.format("1.27.6"), "gitea"),  # the timer's patch release
    (G.format("1.27.2"), G.format("1.27.6"), "gitea"),  # an older pin of the same line: still its floor
    (P.format("17.6"), P.format("17.9"), "db"),
])
def test_a_newer_release_of_the_pins_line_stays(pin, running, service):
    """What gitea-update auto installed is kept: the scheduled redeploy and the timer never fight."""
    key = {"gitea": "gitea_image", "db": "postgres_image"}[service]
    images = {"gitea": G.format("1.27.3"), "db": P.format("17.6"), service: running}
    plan = updates.plan(data(**{key: pin}), seen(images["gitea"], images["db"], 17))
    assert plan.images[service] == running and plan.update is False


@pytest.mark.parametrize(("have", "pin", "depth", "newer"), [
    (G.format("1.27.6"), G.format("1.27.3"), 2, True),
    (G.format("1.28.0"), G.format("1.27.3"), 2, False),  # another minor line: the operator's pin decides
    (G.format("1.27.3"), G.format("1.27.3"), 2, False),
    ("docker.gitea.com/gitea:1.27.6", G.format("1.27.3"), 2, False),  # another variant
    ("mirror.example.org/gitea:1.27.6-rootless", G.format("1.27.3"), 2, False),  # another repository
    (P.format("17.9"), P.format("17.6"), 1, True),
    (P.format("18.1"), P.format("17.6"), 1, False),
    ("docker.io/library/postgres@sha256:" + "a" * 64, P.format("17.6"), 1, False),
])
def test_newer_in_line(have, pin, depth, newer):
    assert updates.newer_in_line(have, pin, depth) is newer


@pytest.mark.parametrize("pin", ["18.1-trixie", "16.4-trixie", "18"])
def test_a_postgres_major_other_than_the_datas_is_refused(pin):
    with pytest.raises(DeployError, match=r"is PostgreSQL 1[68], but the data in /srv/gitea/postgres is PostgreSQL 17: "
                                          r"a major upgrade is a dump and restore"):
        updates.plan(data(postgres_image=f"docker.io/library/postgres:{pin}"), seen(G.format("1.27.3"), P.format("17.6"), 17))


def test_a_postgres_pin_without_a_version_is_refused_once_data_exists():
    with pytest.raises(DeployError, match="names no version"):
        updates.plan(data(postgres_image="docker.io/library/postgres@sha256:" + "a" * 64), seen(pg=17))


def test_an_external_database_has_no_postgres_check():
    plan = updates.plan(data(database_endpoint="db.example.org:5432", postgres_image=P.format("18.1")), seen(pg=17))
    assert "db" not in plan.images


def test_an_image_that_failed_here_is_not_tried_again():
    failed = {G.format("1.27.5"): {"service": "gitea", "why": "healthz failed"}}
    plan = updates.plan(data(gitea_image=G.format("1.27.5")), seen(G.format("1.27.4"), P.format("17.6"), 17, failed=failed))
    assert plan.images["gitea"] == G.format("1.27.4")
    assert plan.update is False
    assert "healthz failed" in plan.kept[G.format("1.27.5")]


def test_the_fact_reads_images_data_version_and_state():
    state = {"failed": {"x": {}}, "last": {"outcome": "ok"}}
    got = updates.StackImages().process([f"image gitea {G.format('1.27.3')}", f"image db {P.format('17.6')}",
                                         "pg 17", f"state {json.dumps(state)}"])
    assert got == updates.Seen({"gitea": G.format("1.27.3"), "db": P.format("17.6")}, 17, state)
    assert updates.StackImages().process([]) == updates.Seen()


def test_a_major_upgrade_under_way_stops_the_deploy_before_any_op():
    """gitea-pg-upgrade's plan file on the host: a scheduled redeploy must not start Gitea on the
    half-made cluster (nor render the old image back), whatever the pins say."""
    assert updates.StackImages().process(["pg 15", "pg-upgrade"]) == updates.Seen(pg_major=15, pg_upgrade=True)
    running = seen(gitea=G.format("1.27.3"), db=P.format("15.14"), pg=15)
    running.pg_upgrade = True
    with pytest.raises(DeployError, match="a PostgreSQL major upgrade is under way .* Nothing was changed"):
        updates.plan(data(postgres_image=P.format("15.14")), running)


def test_the_fact_quotes_its_paths():
    command = updates.StackImages().command(pg_version_file="/srv/a b/postgres/PG_VERSION", state_file="/x/y'z")
    assert "'/srv/a b/postgres/PG_VERSION'" in command and "'/x/y'\"'\"'z'" in command


# --- gitea_update.py ----------------------------------------------------------------------------


@pytest.mark.parametrize(("output", "image", "ok"), [
    ("Gitea version 1.27.4 built with GNU Make 4.4.1, go1.25.3 : bindata, sqlite", G.format("1.27.4"), True),
    ("Gitea version 1.27.4+standin (lab stand-in, not Gitea) built with Python", "127.0.0.1:5000/lab/gitea-standin:1.27.4",
     True),
    ("Gitea version 1.27.3 built with GNU Make", G.format("1.27.4"), False),
    ("", G.format("1.27.4"), False),
    ("Gitea version", G.format("1.27.4"), False),
])
def test_the_reported_version_is_the_tags(output, image, ok):
    assert job.reports_version(output, image) is ok


def test_changed_images_names_each_service_that_moves():
    assert job.changed_images({"gitea": "a:1", "db": "p:1"}, {"gitea": "a:2", "db": "p:1"}) == {"gitea": ("a:1", "a:2")}


def test_metrics_say_whether_the_last_update_failed():
    text = job.render_metrics({"last": {"outcome": "rolled-back", "ended": 100.0, "seconds": 42.5}, "last_success": 50})
    assert "gitea_deploy_update_last_failed 1.000" in text
    assert "gitea_deploy_update_last_run_timestamp_seconds 100.000" in text
    assert "gitea_deploy_update_last_success_timestamp_seconds 50.000" in text
    assert "gitea_deploy_update_last_failed 0.000" in job.render_metrics({"last": {"outcome": "ok"}})
    assert "gitea_deploy_update_last_failed 0.000" in job.render_metrics({})


def test_a_rolled_back_update_records_its_images_as_failed(tmp_path):
    ucfg = update_config(tmp_path, "Sun 03:00-05:00", False)
    state = {"pending": {"from": {"gitea": "g:1", "db": "p:1"}, "to": {"gitea": "g:2", "db": "p:1"}}}
    job.finished(ucfg, state, "rolled-back", 0.0, why="healthz")
    saved = json.loads((tmp_path / "state.json").read_text())
    assert "pending" not in saved
    assert saved["failed"] == {"g:2": {"service": "gitea", "at": saved["last"]["ended"], "why": "healthz"}}
    assert "gitea_deploy_update_last_failed 1.000" in (tmp_path / "m.prom").read_text()


def test_update_env_holds_every_key_the_job_reads():
    rows = updates.update_env({**data(), "gitea_domain": "git.example.org", "node_exporter_textfile_dir": "/t",
                               "monitoring_tls_ca_bundle": None, "auto_update": True, "update_window": "* 02:00-03:00",
                               "update_reboot": False})
    values = {key: value for key, value, _ in rows}
    ucfg = job.UpdateConfig.from_env(values)
    assert ucfg.next_compose == "/srv/gitea/compose.next.yaml"
    assert (ucfg.auto, ucfg.window, ucfg.reboot) == (True, "* 02:00-03:00", False)
    assert values["GITEA_UPDATE_CA_FILE"] == ""
    with pytest.raises(ValueError, match="GITEA_UPDATE_DOMAIN not set"):
        job.UpdateConfig.from_env({k: v for k, v in values.items() if k != "GITEA_UPDATE_DOMAIN"})


def test_newer_in_line_on_the_host_skips_failed_releases_and_other_lines():
    tags = ["1.27.3-rootless", "1.27.4-rootless", "1.27.5-rootless", "1.28.0-rootless", "1.27.9", "latest"]
    image = G.format("1.27.3")
    assert job.newer_in_line(image, tags, 2, set()) == G.format("1.27.5")
    assert job.newer_in_line(image, tags, 2, {G.format("1.27.5")}) == G.format("1.27.4")
    assert job.newer_in_line(G.format("1.27.5"), tags, 2, set()) is None


def test_the_compose_file_gets_exactly_the_new_images():
    text = 'services:\n  db:\n    image: "p:17.6"\n  gitea:\n    image: "g:1.27.3"\n'
    assert job.with_images(text, {"gitea": ("g:1.27.3", "g:1.27.4")}) == text.replace("g:1.27.3", "g:1.27.4")
    with pytest.raises(job.JobError, match="names g:9 0 times"):
        job.with_images(text, {"gitea": ("g:9", "g:10")})


def _at(weekday: int, hour: int, minute: int = 0) -> datetime.datetime:
    """A time in the week of Monday 2026-11-30 (weekday 0 = Monday)."""
    return datetime.datetime(2026, 11, 30, hour, minute) + datetime.timedelta(days=weekday)


@pytest.mark.parametrize(("text", "when", "open_"), [
    ("Sun 03:00-05:00", (6, 3, 0), True),
    ("Sun 03:00-05:00", (6, 5, 0), False),
    ("Sun 03:00-05:00", (5, 3, 0), False),
    ("Sat 23:00-01:00", (6, 0, 30), True),  # past midnight, opened the day before
    ("Sat 23:00-01:00", (5, 22, 59), False),
    ("* 02:00-03:00", (2, 2, 15), True),
    ("Mon,Thu 02:00-03:00", (3, 2, 15), True),
    ("Mon,Thu 02:00-03:00", (2, 2, 15), False),
])
def test_the_update_window(text, when, open_):
    assert window.is_open(window.parse_window(text), _at(*when)) is open_


@pytest.mark.parametrize("text", ["Sunday 03:00-05:00", "Sun 3:00-5:00", "Sun 03:00-03:00", "Sun,Sun 01:00-02:00",
                                  "Xyz 01:00-02:00", "Sun 24:00-01:00", "", "Sun 03:00-05:00; rm -rf /"])
def test_a_bad_window_is_refused_with_the_grammar(text):
    with pytest.raises(ValueError, match="update window"):
        window.parse_window(text)


def test_the_timer_opens_with_the_window():
    assert window.on_calendar(window.parse_window("Sun 03:00-05:00")) == "Sun *-*-* 03:00:00"
    assert window.on_calendar(window.parse_window("* 02:30-03:00")) == "*-*-* 02:30:00"
    assert window.on_calendar(window.parse_window("Mon,Thu 02:00-03:00")) == "Mon,Thu *-*-* 02:00:00"


def test_auto_does_nothing_outside_the_window(tmp_path, monkeypatch):
    ucfg = update_config(tmp_path, "Sun 03:00-05:00", True)
    monkeypatch.setattr(job, "images", lambda path: pytest.fail("auto looked at the stack outside its window"))
    assert job.auto(None, ucfg, now=_at(2, 12)) == 0
    assert not (tmp_path / "next").exists()


@pytest.mark.parametrize(("allowed", "required", "rebooted"), [(True, True, True), (True, False, False),
                                                               (False, True, False)])
def test_auto_reboots_in_the_window_only_when_asked_and_allowed(tmp_path, monkeypatch, allowed, required, rebooted):
    ucfg = update_config(tmp_path, "* 00:00-23:59", allowed)
    flag = tmp_path / "reboot-required"
    if required:
        flag.write_text("*** System restart required ***\n")
    calls = []
    monkeypatch.setattr(job, "REBOOT_REQUIRED", str(flag))
    monkeypatch.setattr(job, "images", lambda path: {"gitea": G.format("1.27.3")})
    monkeypatch.setattr(job, "list_tags", lambda ref: ["1.27.3-rootless"])  # nothing newer: no update
    monkeypatch.setattr(job, "run", lambda argv, **kw: calls.append(argv))
    cfg = type("Cfg", (), {"compose_file": str(tmp_path / "compose.yaml")})()
    assert job.auto(cfg, ucfg) == 0
    assert (["systemctl", "reboot"] in calls) is rebooted


def test_auto_does_not_reboot_after_a_failed_update(tmp_path, monkeypatch):
    ucfg = update_config(tmp_path, "* 00:00-23:59", True)
    (tmp_path / "reboot-required").write_text("")
    (tmp_path / "compose.yaml").write_text(f'    image: "{G.format("1.27.3")}"\n')
    calls = []
    monkeypatch.setattr(job, "REBOOT_REQUIRED", str(tmp_path / "reboot-required"))
    monkeypatch.setattr(job, "images", lambda path: {"gitea": G.format("1.27.3")})
    monkeypatch.setattr(job, "list_tags", lambda ref: ["1.27.3-rootless", "1.27.4-rootless"])
    monkeypatch.setattr(job, "run", lambda argv, **kw: calls.append(argv))

    def failing(cfg, ucfg):
        raise job.JobError("rolled back")

    monkeypatch.setattr(job, "apply", failing)
    cfg = type("Cfg", (), {"compose_file": str(tmp_path / "compose.yaml")})()
    with pytest.raises(job.JobError, match="rolled back"):
        job.auto(cfg, ucfg)
    assert G.format("1.27.4") in (tmp_path / "next").read_text()  # what apply was given
    assert ["systemctl", "reboot"] not in calls


def test_a_resumed_update_leaves_no_stale_wish_beside_the_live_file(tmp_path, monkeypatch):
    """A deploy that finds an interrupted update writes compose.next.yaml again, then runs apply,
    which finishes the interrupted one: the written wish must not stay behind (the next deploy asks
    afresh; a leftover would sit there for good)."""
    ucfg = update_config(tmp_path, "* 00:00-23:59", False)
    (tmp_path / "state.json").write_text(json.dumps({"pending": {"from": {}, "to": {}}}))
    (tmp_path / "prev").write_text("old")
    (tmp_path / "next").write_text("the deploy's wish, written again")
    monkeypatch.setattr(job, "Stack", lambda cfg: None)
    monkeypatch.setattr(job, "finish", lambda *args: 0)
    assert job.apply(None, ucfg) == 0
    assert not (tmp_path / "next").exists()

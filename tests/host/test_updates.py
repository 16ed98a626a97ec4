"""tasks/updates.py: the programs an image update runs through, their configuration, the update
window's timer, and no update left half done or failed. Read-only: nothing here changes the host."""

import json

from tasks.backup import PROGRAMS as BACKUP_PROGRAMS
from tasks.updates import (
    AUTO_UNIT,
    ENV_FILE,
    PG_UPGRADE_FILE,
    PROGRAMS,
    STATE_FILE,
    auto_timer,
    next_compose,
    previous_compose,
    window,
)


def test_the_programs_are_installed_and_answer(target):
    for name in (*PROGRAMS, *BACKUP_PROGRAMS):
        program = target.host.file(f"/usr/local/sbin/{name}")
        assert (program.user, program.mode) == ("root", 0o755), name
    for name in PROGRAMS:
        assert target.sudo(f"{name} --help").rc == 0, name


def test_the_configuration_is_the_inventorys(target):
    env = target.host.file(ENV_FILE)
    assert (env.user, env.mode) == ("root", 0o644)
    text = env.content_string
    assert f"GITEA_UPDATE_DOMAIN={target.domain}" in text
    assert f"GITEA_UPDATE_AUTO={'true' if target.data.get('auto_update') else 'false'}" in text
    assert "PASSWORD" not in text.upper().replace("PASSWORD_FILE", "")


def test_the_window_timer_is_as_the_inventory_says(target):
    unit = f"{AUTO_UNIT}.timer"
    assert target.host.file(f"/etc/systemd/system/{unit}").content_string == auto_timer(target.data)
    assert target.service(unit) == (bool(target.data.get("auto_update")),) * 2
    if target.data.get("auto_update"):
        shown = target.sudo(f"systemctl show -p TimersCalendar {unit}").stdout
        assert window.on_calendar(window.parse_window(target.data["update_window"])).split()[-1] in shown, shown


def test_no_update_is_pending_or_failed(target):
    """A pending update is one a run died in (the next deploy finishes it); a failed one paged. A
    PostgreSQL major upgrade's plan left behind: one that died with the host (the deploy refuses)."""
    assert not target.host.file(PG_UPGRADE_FILE).exists, "gitea-pg-upgrade rollback"
    assert not target.host.file(next_compose(target.data)).exists
    assert not target.host.file(previous_compose(target.data)).exists
    state = target.host.file(STATE_FILE)
    if state.exists:
        assert not state.mode & 0o007, "the updater's state is not for everyone"
        found = json.loads(target.sudo(f"cat {STATE_FILE}").stdout)
        assert "pending" not in found, found
        assert (found.get("last") or {}).get("outcome", "ok") == "ok", found["last"]

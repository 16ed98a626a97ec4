"""tasks/common.py's staged configs and tasks/gitea.py's StaleServices, run locally: the shell
each builds does what the deploy relies on (a rejected candidate never reaches the live path, an
installed one forgets the reload marker, facts say exactly what is pending)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tasks.common import ConfigApplied, PendingConfigs, StagedFile, install_script
from tasks.gitea import StaleServices


def sh(script: str) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30)


@pytest.fixture
def layout(tmp_path: Path):
    live_dir, staged_dir = tmp_path / "etc/app", tmp_path / "staged/etc/app"
    live_dir.mkdir(parents=True)
    staged_dir.mkdir(parents=True)
    (live_dir / "a.conf").write_text("OLD\n")
    (staged_dir / "a.conf").write_text("NEW\n")
    marker = tmp_path / "applied.sha256"
    marker.write_text("recorded\n")
    return StagedFile(live=str(live_dir / "a.conf"), staged=str(staged_dir / "a.conf"), mode="644"), marker


def test_a_candidate_that_passes_is_installed_and_the_marker_forgotten(layout):
    staged, marker = layout
    run = sh(install_script([staged], check=f"grep -q NEW {staged.staged}", marker_path=str(marker),
                            overlay=False))
    assert run.returncode == 0, run.stderr
    assert Path(staged.live).read_text() == "NEW\n"
    assert oct(Path(staged.live).stat().st_mode & 0o777) == "0o644"
    assert not marker.exists()  # so the next run reloads, even if this one dies right now
    assert not list(Path(staged.live).parent.glob("*.gitea-deploy-new"))


def test_a_candidate_that_fails_is_not_installed(layout):
    staged, marker = layout
    run = sh(install_script([staged], check="echo 'validator: bad option' >&2; false",
                            marker_path=str(marker), overlay=False))
    assert run.returncode != 0
    assert "validator: bad option" in run.stderr and "failed validation" in run.stderr
    assert Path(staged.live).read_text() == "OLD\n"
    assert marker.read_text() == "recorded\n"


def _can_unshare() -> bool:
    return (os.geteuid() == 0 and shutil.which("unshare") is not None
            and sh("unshare --mount --propagation private true").returncode == 0)


@pytest.mark.skipif(not _can_unshare(), reason="needs root and unshare --mount (the deploy runs as root)")
@pytest.mark.parametrize("candidate, installed", [("GOOD\n", True), ("BAD\n", False)])
def test_the_overlay_shows_the_validator_the_candidate_at_the_live_path(layout, candidate, installed):
    staged, marker = layout
    Path(staged.staged).write_text(candidate)
    # The check reads the LIVE path: inside the namespace it holds the candidate.
    run = sh(install_script([staged], check=f"grep -q GOOD {staged.live}", marker_path=str(marker),
                            overlay=True))
    assert (run.returncode == 0) is installed, run.stderr
    assert Path(staged.live).read_text() == (candidate if installed else "OLD\n")
    assert sh(f"grep -c {Path(staged.live).parent} /proc/self/mounts").stdout.strip() == "0"  # nothing leaked


def test_pending_configs_names_missing_differing_and_mode_drifted_files(tmp_path):
    pairs = []
    for name, live_text, mode in [("same", "x", 0o644), ("differs", "y", 0o644), ("mode", "x", 0o600),
                                  ("missing", None, 0o644)]:
        staged, live = tmp_path / f"{name}.staged", tmp_path / f"{name}.live"
        staged.write_text("x")
        if live_text is not None:
            live.write_text(live_text)
            live.chmod(mode)
        pairs.append((str(staged), str(live), "644"))
    out = sh(PendingConfigs().command(pairs=tuple(pairs)))
    assert out.returncode == 0
    assert PendingConfigs().process(out.stdout.splitlines()) == [
        str(tmp_path / f"{n}.live") for n in ("differs", "mode", "missing")]


def test_config_applied_is_current_only_when_the_marker_has_the_hash(tmp_path):
    effective, marker = tmp_path / "effective", tmp_path / "marker"
    effective.write_text("config\n")
    fact = ConfigApplied()
    state = lambda: fact.process(sh(fact.command(effective=f"cat {effective}", marker=str(marker))).stdout.splitlines())  # noqa: E731
    assert state() == "stale"  # no marker yet
    sh(f"cat {effective} | sha256sum | cut -d' ' -f1 > {marker}")
    assert state() == "current"
    effective.write_text("config, changed\n")
    assert state() == "stale"


@pytest.mark.parametrize("lines, stale", [
    (["want db 1", "want gitea 2", "have db 1", "have gitea 2"], []),
    (["want db 1", "want gitea 3", "have db 1", "have gitea 2"], ["gitea"]),  # made from an older file
    (["want db 1", "want gitea 2", "have gitea 2"], ["db"]),  # not running
    (["want db 1", "want gitea 2", "have db 1", "have gitea 2", "have gitea 2"], ["gitea"]),  # two containers
    (["want db 1", "have db 1", "have old 9"], ["old"]),  # orphan
    (["! compose config failed"], ["(the compose file does not load)"]),
    ([], ["(no services in the compose file)"]),
])
def test_stale_services(lines, stale):
    assert StaleServices().process(lines) == stale

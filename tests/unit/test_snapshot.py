"""tasks/snapshot.py, the fast path of a no-op redeploy: the batched facts run locally on real
files, the comparisons, and that the whole deploy still loads and runs through pyinfra (against
its @fake connector, which answers every command with nothing)."""

from __future__ import annotations

import hashlib
import os
import subprocess
from io import StringIO

import pytest
from pyinfra.api.util import get_file_sha1

from tasks import snapshot
from tasks.common import AppliedConfigs, LoginAccounts
from tasks.snapshot import ManagedPaths, Seen, Units, Want, matches


def sh(command: str) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", command], capture_output=True, text=True)


def test_managed_paths_sees_files_directories_links_and_absence(tmp_path):
    managed, secret, folder, link = tmp_path / "conf", tmp_path / "secret", tmp_path / "dir", tmp_path / "link"
    managed.write_text("managed\n")
    managed.chmod(0o640)
    secret.write_text("s3cret")
    folder.mkdir(mode=0o750)
    folder.chmod(0o750)
    link.symlink_to("/usr/share/zoneinfo/UTC")
    fact = ManagedPaths()
    paths = tuple(str(p) for p in (managed, secret, folder, link, tmp_path / "absent"))
    out = sh(fact.command(paths=paths, hashed=(str(managed),)))
    assert out.returncode == 0, out.stderr
    seen = fact.process(out.stdout.splitlines())
    uid, gid = os.getuid(), os.getgid()
    assert seen[str(managed)] == Seen("file", 640, uid, gid, 8, hashlib.sha1(b"managed\n").hexdigest())
    secret.chmod(0o400)
    seen = fact.process(sh(fact.command(paths=paths, hashed=(str(managed),))).stdout.splitlines())
    assert seen[str(secret)] == Seen("file", 400, uid, gid, 6, None)  # not hashed: its digest stays on the host
    assert seen[str(folder)].kind == "directory" and seen[str(folder)].mode == 750
    assert seen[str(link)].kind == "link" and seen[str(link)].digest == "/usr/share/zoneinfo/UTC"
    assert seen[str(tmp_path / "absent")] == Seen(None)


def test_a_match_needs_every_checked_property():
    seen = Seen("file", 644, 0, 0, 10, "abc")
    assert matches(seen, Want("file", 644, 0, 0, "abc"))
    assert matches(seen, Want("file"))  # unchecked properties do not count
    for differs in (Want("file", 600), Want("file", uid=61000), Want("file", gid=999), Want("file", digest="abd"),
                    Want("directory"), Want("link"), Want(None)):
        assert not matches(seen, differs), differs
    assert matches(Seen(None), Want(None))
    assert not matches(Seen(None), Want("file"))
    assert not matches(None, Want(None))  # a path the look did not cover is never a match
    assert not matches(Seen("file", 600, 0, 0, 0), Want("file", nonempty=True))
    assert matches(Seen("file", 600, 0, 0, 43), Want("file", nonempty=True))


def test_expected_digest_is_the_sha1_of_what_pyinfra_uploads(tmp_path):
    """files.put hashes its src with get_file_sha1; the remote side is `sha1sum`."""
    text = "ünïcode and a trailing newline\n"
    target = tmp_path / "uploaded"
    target.write_bytes(text.encode("utf-8"))
    remote = sh(f"sha1sum {target} | cut -c1-40").stdout.strip()
    assert get_file_sha1(StringIO(text)) == remote
    assert get_file_sha1(str(target)) == remote


SYSTEMCTL_SHOW = """Id=cron.service
SubState=running
UnitFileState=enabled

SubState=waiting
Id=certbot.timer
UnitFileState=enabled

Id=nginx.service
SubState=dead
UnitFileState=
Id=gitea-backup-resume.service
SubState=dead
UnitFileState=enabled
"""


def test_units_reads_pyinfras_running_and_enabled_per_unit():
    """Blocks are split on blank lines and on a repeated property (any property order)."""
    assert Units().process(SYSTEMCTL_SHOW.splitlines()) == {
        "cron.service": (True, True),
        "certbot.timer": (True, True),
        "nginx.service": (False, False),
        "gitea-backup-resume.service": (False, True),
    }
    command = Units().command(units=("ssh.service", "certbot.timer"))
    assert command.startswith("systemctl show --all --property Id --property SubState --property UnitFileState ")


def test_applied_configs_batches_config_applied(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    one.write_text("config one\n")
    two.write_text("config two\n")
    sh(f"sha256sum < {one} | cut -d' ' -f1 > {tmp_path / 'one.sha256'}")
    fact = AppliedConfigs()
    pairs = ((f"cat {one}", str(tmp_path / "one.sha256")), (f"cat {two}", str(tmp_path / "two.sha256")))
    out = sh(fact.command(pairs=pairs))
    assert fact.process(out.stdout.splitlines()) == {str(tmp_path / "one.sha256"): "current",
                                                     str(tmp_path / "two.sha256"): "stale"}


def test_login_accounts_names_only_accounts_that_can_log_in():
    lines = ["admin:1000:/bin/bash", "postgres:999:/usr/sbin/nologin", "svc:61000:/bin/false"]
    assert LoginAccounts().process(lines) == {1000: "admin:/bin/bash"}
    assert LoginAccounts().command(uids=(61000, 999)) == (
        "getent passwd 61000 | cut -d: -f1,3,7; getent passwd 999 | cut -d: -f1,3,7; true")


def test_owner_names_other_than_root_are_refused():
    with pytest.raises(ValueError, match="by number"):
        snapshot.directory(name="x", path="/x", mode="755", user="gitea")


class FakeOp:
    def __init__(self, changed: bool | None):
        self.changed = changed  # None: not run yet

    def is_complete(self) -> bool:
        return self.changed is not None

    def did_change(self) -> bool:
        return bool(self.changed)


def test_a_look_is_retaken_after_any_change_and_only_then(monkeypatch):
    """The soundness of the fast path: one look serves every check until an op of this run
    changed something; then the next check looks again."""
    from types import SimpleNamespace

    class FakeHost:
        name = "h"

        def get_fact(self, fact, **kwargs):
            asked.append(kwargs)
            return {"/etc/x": Seen("file", 644, 0, 0, 1, "d")}

    ops, asked = {}, []
    fake = FakeHost()
    fake.state = SimpleNamespace(ops={fake: ops})
    monkeypatch.setattr(snapshot, "host", fake)
    monkeypatch.setattr(snapshot, "_registry", {})
    monkeypatch.setattr(snapshot, "_looks", {})
    differs = snapshot.expect("/etc/x", Want("file", 644, digest="d"))
    assert differs() is False and differs() is False
    assert len(asked) == 1  # one look for both checks
    ops["a"] = SimpleNamespace(operation_meta=FakeOp(False))  # ran, changed nothing
    assert differs() is False and len(asked) == 1
    ops["b"] = SimpleNamespace(operation_meta=FakeOp(True))  # changed something
    assert differs() is False and len(asked) == 2
    ops["c"] = SimpleNamespace(operation_meta=FakeOp(None))  # not run yet
    assert differs() is False and len(asked) == 2
    snapshot.missing("/etc/y")  # the registry grew (a look taken while deploy.py loaded)
    assert differs() is False and len(asked) == 3
    assert asked[-1] == {"paths": ("/etc/x", "/etc/y"), "hashed": ("/etc/x",)}


def test_concurrently_runs_the_checks_at_once_and_keeps_each_output_apart(tmp_path):
    from tasks.snapshot import Concurrently

    fact = Concurrently()
    flag = tmp_path / "second-ran"
    # The first check sees the second one's file only if they run at the same time (bounded wait).
    waits = f"for i in $(seq 100); do [ -e {flag} ] && break; sleep 0.05; done; [ -e {flag} ] && echo saw-it"
    commands = (waits, f"touch {flag}; printf 'a\\nb'", "echo broken >&2; exit 3", "true", "printf '\\nx\\n'")
    out = sh(fact.command(commands=commands))
    assert out.returncode == 0, out.stderr
    assert fact.process(out.stdout.splitlines()) == {0: ["saw-it"], 1: ["a", "b"], 4: ["", "x"]}

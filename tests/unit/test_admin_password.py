"""The first administrator's password is printed by Gitea once: a run killed between the create
and the write must not lose it (tasks/gitea.py create_admin_command). The command runs here in
bash with a fake `docker` that plays `docker compose exec gitea gitea admin user create`."""

from __future__ import annotations

import os
import subprocess
import textwrap

import pytest

from tasks.gitea import capture_file, create_admin_command

PASSWORD = "s3cr3t-Pa'ss-w0rd"


@pytest.fixture
def sandbox(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "docker"
    # Like Gitea: refuse an existing user; else print the generated password once. With DIE_AFTER_PRINT
    # the process that asked (the deploy's shell) is killed right after Gitea printed it.
    fake.write_text(textwrap.dedent(f"""\
        #!/bin/bash
        state={tmp_path}/created
        echo "$@" >> {tmp_path}/calls
        if [ -e "$state" ]; then echo 'user already exists [name: gitadmin]' >&2; exit 1; fi
        touch "$state"
        printf '%s\\n' "generated random password is '{PASSWORD}'"
        printf '%s\\n' "New user 'gitadmin' has been successfully created!"
        if [ -n "$DIE_AFTER_PRINT" ]; then kill -9 $PPID; fi
        """))
    fake.chmod(0o755)
    (tmp_path / "secrets").mkdir(mode=0o700)
    return tmp_path


def run(sandbox, **env):
    password_file = str(sandbox / "secrets" / "admin_password")
    command = create_admin_command("docker compose -f /srv/gitea/compose.yaml ", "gitadmin",
                                   "o'brien@example.com", password_file)
    return subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=30,
                          env={**os.environ, "PATH": f"{sandbox / 'bin'}:{os.environ['PATH']}", **env})


def test_password_lands_in_a_root_only_file(sandbox):
    cp = run(sandbox)
    assert cp.returncode == 0, cp.stderr
    path = sandbox / "secrets" / "admin_password"
    assert path.read_text().strip() == PASSWORD
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert not os.path.exists(capture_file(str(path)))
    assert "--email o'brien@example.com" in (sandbox / "calls").read_text()


def test_a_run_killed_after_the_create_keeps_the_password_for_the_next(sandbox):
    first = run(sandbox, DIE_AFTER_PRINT="1")
    assert first.returncode != 0
    path = sandbox / "secrets" / "admin_password"
    assert not path.exists()  # the run died before writing it...
    assert os.path.exists(capture_file(str(path)))  # ...but Gitea's answer is kept, root-only
    second = run(sandbox)  # the next deploy (its guard sees the capture)
    assert second.returncode == 0, second.stderr
    assert path.read_text().strip() == PASSWORD
    assert (sandbox / "calls").read_text().count("admin user create") == 1  # not created twice


def test_a_failed_create_leaves_no_capture(sandbox):
    (sandbox / "created").touch()  # the user exists already: Gitea refuses
    cp = run(sandbox)
    assert cp.returncode != 0 and "already exists" in cp.stderr
    assert not os.path.exists(capture_file(str(sandbox / "secrets" / "admin_password")))

"""tasks/docker.py: Debian's engine with Compose v2, logging to the journal, live-restore."""

import json


def test_engine_and_compose_installed(target):
    for package in ("docker.io", "docker-compose"):
        assert target.host.package(package).is_installed, package
    assert target.sudo("docker compose version").rc == 0


def test_engine_running_and_enabled(target):
    assert target.service("docker") == (True, True)


def test_daemon_logs_to_the_journal_and_live_restores(target):
    info = json.loads(target.sudo("docker info --format '{{json .}}'").stdout)
    assert info["LoggingDriver"] == "journald"
    assert info["LiveRestoreEnabled"] is True

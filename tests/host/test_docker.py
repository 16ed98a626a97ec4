"""tasks/docker.py: Debian's engine with Compose v2, rotating logs and live-restore."""

import json


def test_engine_and_compose_installed(target):
    for package in ("docker.io", "docker-compose"):
        assert target.host.package(package).is_installed, package
    assert target.sudo("docker compose version").rc == 0


def test_engine_running_and_enabled(target):
    assert target.service("docker") == (True, True)


def test_daemon_rotates_logs_and_live_restores(target):
    info = json.loads(target.sudo("docker info --format '{{json .}}'").stdout)
    assert info["LoggingDriver"] == "json-file"
    assert info["LiveRestoreEnabled"] is True
    config = json.loads(target.host.file("/etc/docker/daemon.json").content_string)
    assert config["log-opts"] == {"max-size": target.data["docker_log_max_size"],
                                  "max-file": str(target.data["docker_log_max_file"])}

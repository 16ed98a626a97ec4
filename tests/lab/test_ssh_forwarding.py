"""The admin's sshd forwards to the monitoring UIs and to nothing else (templates/ssh/gitea-deploy.conf.j2,
docs/runbooks/monitoring.md): a direct-tcpip channel, what `ssh -L` opens, as the lab's admin user
through the host's published admin port, exactly as an operator's laptop would."""

from __future__ import annotations

import subprocess

import paramiko
import pytest

from lab import REPO, api
from tasks.settings import defaults

pytestmark = pytest.mark.lab

SETTINGS = defaults()
ALLOWED = ("prometheus_port", "alertmanager_port", "grafana_port")
# Listening on the host's loopback, so a refusal can only be sshd's (not "connection refused").
REFUSED = ("gitea_http_port", "node_exporter_port", "postgres_exporter_port")


@pytest.fixture(scope="module")
def ssh(converged_host):
    state = api.state()
    client = paramiko.SSHClient()
    client.load_host_keys(str(REPO / converged_host["known_hosts"]))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect("127.0.0.1", port=converged_host["ssh_port"], username="admin",
                   key_filename=str(REPO / state["ssh_key"]), look_for_keys=False, allow_agent=False, timeout=10)
    yield client
    client.close()


def open_forward(client: paramiko.SSHClient, port: int) -> tuple[paramiko.Channel | None, int | None, str]:
    """A direct-tcpip channel to 127.0.0.1:port: (channel, None, "") or (None, RFC 4254 reason code, text)."""
    try:
        return client.get_transport().open_channel("direct-tcpip", ("127.0.0.1", port), ("127.0.0.1", 0),
                                                   timeout=10), None, ""
    except paramiko.ChannelException as refused:
        return None, refused.code, refused.text


def listening(name: str, port: int) -> bool:
    out = api.exec(name, ["ss", "-Htln", f"sport = :{port}"], check=True).stdout
    return bool(out.strip())


@pytest.mark.parametrize("key", ALLOWED)
def test_sshd_forwards_to_the_monitoring_uis(ssh, converged_host, key):
    """sshd permits the channel: it opens, or (the UI not running: Grafana off) fails as a refused
    TCP connect, never as administratively prohibited."""
    channel, code, text = open_forward(ssh, SETTINGS[key])
    if channel:
        channel.close()
        return
    assert code == paramiko.common.OPEN_FAILED_CONNECT_FAILED, f"{key}: {code} {text}"
    assert not listening(converged_host["name"], SETTINGS[key]), f"{key}: listening, yet the channel failed: {text}"
    print(f"{key} {SETTINGS[key]}: permitted by sshd; nothing listens there on {converged_host['name']}")


@pytest.mark.parametrize("key", REFUSED)
def test_sshd_refuses_every_other_loopback_port(ssh, converged_host, key):
    assert listening(converged_host["name"], SETTINGS[key]), f"{key}: nothing listens, the test would prove nothing"
    channel, code, text = open_forward(ssh, SETTINGS[key])
    if channel:
        channel.close()
    assert code == paramiko.common.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED, f"{key}: {code} {text}"
    assert "prohibited" in text.lower()


def test_the_runbooks_ssh_command_reaches_prometheus(converged_host):
    """docs/runbooks/monitoring.md's `ssh -N -L ...`, then Prometheus' health endpoint through it."""
    name = converged_host["name"]
    if not listening(name, SETTINGS["prometheus_port"]):
        pytest.fail(f"nothing listens on 127.0.0.1:{SETTINGS['prometheus_port']} in {name}: no Prometheus deployed")
    local = 39090
    forward = [f"-L{local + i}:127.0.0.1:{SETTINGS[key]}" for i, key in enumerate(ALLOWED)]
    *options, destination = api.ssh_command(name)
    tunnel = subprocess.Popen([*options, "-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes", "-N", *forward,
                               destination], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    try:
        for _ in range(50):
            probe = subprocess.run(["curl", "-fsS", "--max-time", "5", f"http://127.0.0.1:{local}/-/healthy"],
                                   capture_output=True, text=True)
            if probe.returncode == 0:
                break
            if tunnel.poll() is not None:
                pytest.fail(f"ssh -L exited {tunnel.returncode}: {tunnel.stderr.read().decode()[-500:]}")
            subprocess.run(["sleep", "0.2"])
        assert probe.returncode == 0, probe.stderr
        assert "Prometheus" in probe.stdout
    finally:
        tunnel.terminate()
        tunnel.wait(timeout=10)

"""Host checks run against any deployed host, lab or production:

    pytest tests/host --inventory inventories/prod.py [--tls-ca CA.pem]

The hosts, how to reach them and what they should hold (domain, ports, data root) come from the
same pyinfra inventory the deploy used. `--tls-ca` names the CA the served chain must verify
against (the lab's pebble root); without it the system trust store is used, as browsers would.
"""

from __future__ import annotations

import shlex
import socket
import ssl
from dataclasses import dataclass

import pytest
import testinfra

from tasks import REPO


def pytest_addoption(parser):
    group = parser.getgroup("gitea-deploy host checks")
    group.addoption("--inventory", help="pyinfra inventory file naming the hosts to check")
    group.addoption("--limit", help="only this host of the inventory")
    group.addoption("--tls-ca", help="CA file the served certificate chain must verify against")


@dataclass
class Target:
    """One deployed host: a testinfra Host inside, its inventory data, and its public side."""

    name: str
    host: testinfra.host.Host
    data: dict
    tls_ca: str | None

    @property
    def address(self) -> str:
        """Where the outside world reaches the host (the address the deploy connected to)."""
        return self.data.get("ssh_hostname") or self.name

    @property
    def domain(self) -> str:
        return self.data["gitea_domain"]

    def sudo(self, command: str):
        """Run a bash command as root on the host."""
        with self.host.sudo():
            return self.host.run(f"bash -c {shlex.quote(command)}")

    def service(self, name: str) -> tuple[bool, bool]:
        """(running, enabled), asked as root: systemctl needs D-Bus for other users."""
        with self.host.sudo():
            service = self.host.service(name)
            return service.is_running, service.is_enabled

    def compose(self, args: str):
        return self.sudo(f"docker compose -f {self.data['data_root']}/compose.yaml {args}")

    def tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.tls_ca)

    def https_get(self, path: str, port: int = 443) -> tuple[int, dict, str]:
        """GET https://<domain><path> from outside, at the host's address, verifying the chain."""
        with socket.create_connection((self.address, port), timeout=10) as raw:
            with self.tls_context().wrap_socket(raw, server_hostname=self.domain) as tls:
                return _http_exchange(tls, self.domain, path)

    def http_get(self, path: str, port: int = 80) -> tuple[int, dict, str]:
        with socket.create_connection((self.address, port), timeout=10) as raw:
            return _http_exchange(raw, self.domain, path)


def _http_exchange(sock, domain: str, path: str) -> tuple[int, dict, str]:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {domain}\r\nConnection: close\r\n\r\n".encode())
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body.decode("utf-8", "replace")


def _inventory_hosts(config) -> list[tuple[str, dict]]:
    from pyinfra.api import State
    from pyinfra.context import ctx_inventory, ctx_state
    from pyinfra_cli.inventory import make_inventory

    path = config.getoption("--inventory")
    if not path:
        return []
    with ctx_state.use(State()):  # pyinfra reads inventory files inside a state context
        inventory = make_inventory(path, cwd=str(REPO))
    with ctx_inventory.use(inventory):
        hosts = [(h.name, h.data.dict()) for h in inventory]
    limit = config.getoption("--limit")
    return [(n, d) for n, d in hosts if not limit or n == limit]


def _testinfra_host(name: str, data: dict) -> testinfra.host.Host:
    spec = f"ssh://{data.get('ssh_user', 'root')}@{data.get('ssh_hostname', name)}:{data.get('ssh_port', 22)}"
    extra = ["-o", "BatchMode=yes"]
    if data.get("ssh_known_hosts_file"):
        extra += ["-o", f"UserKnownHostsFile={data['ssh_known_hosts_file']}",
                  "-o", "StrictHostKeyChecking=accept-new"]
    return testinfra.get_host(spec, ssh_identity_file=data.get("ssh_key"),
                              ssh_extra_args=shlex.join(extra))


def pytest_generate_tests(metafunc):
    if "target" in metafunc.fixturenames:
        hosts = _inventory_hosts(metafunc.config)
        metafunc.parametrize("target", hosts or [None], ids=[n for n, _ in hosts] or ["no-inventory"],
                             indirect=True, scope="session")


def pytest_configure(config):
    config.addinivalue_line("markers", "when_set(setting): a check of what only a host with this setting "
                            "on has; deselected (not skipped) for the others")
    # pytest.mark.applies.with_args(predicate): a lone callable argument would be decorated instead.
    config.addinivalue_line("markers", "applies(predicate): a check of what only a host whose data the "
                            "predicate accepts has (e.g. tasks.heartbeat.enabled); deselected for the others")


def pytest_collection_modifyitems(config, items):
    """Checks of an optional part (Grafana, the heartbeat, the stack's own database) apply only to
    the hosts that have it: the others are deselected, so a host check run reports no skips; what
    such a host must not have is a check of its own (e.g. test_grafana.py's no-container check)."""
    kept, dropped = [], []
    for item in items:
        param = getattr(item, "callspec", None) and item.callspec.params.get("target")
        (dropped if param is not None and not applies(item, param[1]) else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def applies(item, data: dict) -> bool:
    """Whether the item's when_set/applies markers all accept this host's data."""
    return (all(data.get(m.args[0]) for m in item.iter_markers("when_set"))
            and all(m.args[0](data) for m in item.iter_markers("applies")))


@pytest.fixture(scope="session")
def target(request) -> Target:
    if request.param is None:
        pytest.skip("no hosts to check: pass --inventory inventories/<env>.py")
    name, data = request.param
    return Target(name=name, host=_testinfra_host(name, data), data=data,
                  tls_ca=request.config.getoption("--tls-ca"))


@pytest.fixture(scope="session")
def secret_values(target) -> list[str]:
    """Every secret on the host, read as root: the values that must appear nowhere else."""
    out = target.sudo(f"for f in {target.data['data_root']}/secrets/*; do cat $f; echo; done").stdout
    values = [line.strip() for line in out.splitlines() if len(line.strip()) >= 12]
    assert values, "no secrets found on the host"
    return values

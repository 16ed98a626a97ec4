"""What answers from outside: only git SSH, HTTP, HTTPS and the admin SSH port."""

import socket


def public_ports(target) -> set[int]:
    return {target.data["git_ssh_port"], 80, 443, target.data["admin_ssh_port"]}


def test_nothing_unexpected_listens_beyond_loopback(target):
    out = target.sudo("ss -Hltun").stdout
    exposed = set()
    for line in out.splitlines():
        local = line.split()[4]
        address, _, port = local.rpartition(":")
        address = address.strip("[]").split("%")[0]
        if not (address.startswith("127.") or address == "::1"):
            exposed.add(int(port))
    assert exposed <= public_ports(target), f"unexpected listeners: {sorted(exposed - public_ports(target))}"


def reachable(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=3):
            return True
    except OSError:
        return False


def test_public_ports_answer_from_outside(target):
    for port in public_ports(target):
        assert reachable(target.address, port), port


def test_gitea_and_postgres_unreachable_from_outside(target):
    for port in (target.data["gitea_http_port"], 5432):
        assert not reachable(target.address, port), port

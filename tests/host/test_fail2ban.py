"""tasks/fail2ban.py: the jails run with the inventory's limits, each reads its source, and git SSH
is banned on the forward path (Docker publishes it). tests/lab/test_fail2ban.py attacks them.

Nothing here fails a login: these checks run against production from the operator's address."""

import pytest

from tasks.fail2ban import JAIL
from tasks.nginx import REFUSED_LOG

JAILS = ("sshd", "gitea-web", "gitea-git-ssh", "gitea-basic-auth", "gitea-rate-limited")


def f2b(target, *args: str) -> str:
    result = target.sudo("fail2ban-client " + " ".join(args))
    assert result.rc == 0, result.stderr
    return result.stdout.strip()


def test_fail2ban_runs_every_jail(target):
    assert target.service("fail2ban") == (True, True)
    listed = f2b(target, "status").rpartition("Jail list:")[2]
    assert {j.strip() for j in listed.split(",")} == set(JAILS)


@pytest.mark.parametrize("jail", JAILS)
def test_each_jail_bans_for_the_inventorys_time(target, jail):
    assert int(f2b(target, "get", jail, "bantime")) == target.data["fail2ban_bantime"]
    assert int(f2b(target, "get", jail, "findtime")) == (60 if jail == "gitea-rate-limited"
                                                         else target.data["fail2ban_findtime"])
    assert int(f2b(target, "get", jail, "maxretry")) == (target.data["fail2ban_rate_limited_maxretry"]
                                                         if jail == "gitea-rate-limited"
                                                         else target.data["fail2ban_maxretry"])


def test_loopback_and_the_operators_networks_are_never_banned(target):
    ignored = f2b(target, "get", "sshd", "ignoreip")
    for network in ["127.0.0.0/8", "::1", *(target.data.get("fail2ban_ignore_cidrs") or [])]:
        assert network in ignored, ignored


def test_each_jail_reads_its_source(target):
    assert "_SYSTEMD_UNIT=ssh.service" in f2b(target, "get", "sshd", "journalmatch")
    for jail in ("gitea-web", "gitea-git-ssh"):
        assert f2b(target, "get", jail, "journalmatch").splitlines()[-1] == "CONTAINER_TAG=gitea"
    for jail in ("gitea-basic-auth", "gitea-rate-limited"):
        assert REFUSED_LOG in f2b(target, "get", jail, "logpath")
    log = target.host.file(REFUSED_LOG)
    assert log.exists and log.mode & 0o007 == 0  # client addresses: not for every local user


def test_git_ssh_is_banned_on_the_forward_path_the_rest_on_input(target):
    assert f2b(target, "get", "gitea-git-ssh", "action", "nftables", "chain_hook") == "forward"
    assert f2b(target, "get", "gitea-git-ssh", "action", "nftables", "type") == "allports"
    assert f2b(target, "get", "sshd", "action", "nftables", "chain_hook") == "input"
    assert str(target.data["admin_ssh_port"]) in f2b(target, "get", "sshd", "action", "nftables", "port")


def test_jail_file_is_the_deploys(target):
    jail = target.host.file(JAIL)
    assert (jail.user, jail.mode) == ("root", 0o644)
    assert "Managed by gitea-deploy" in jail.content_string

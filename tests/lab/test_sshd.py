"""The admin's sshd refuses what the internet tries (templates/ssh/gitea-deploy.conf.j2): passwords
are not even offered, root is refused with a key that root's authorized_keys holds, and so is an
account outside ssh_allow_users; the admin's key still gets in. Through the host's published admin
port with paramiko, the SSH library pyinfra itself uses, so the algorithm lists are proven to leave
the deploy its way in."""

from __future__ import annotations

import paramiko
import pytest

from lab import REPO, api

pytestmark = pytest.mark.lab

PUBLIC_KEY = REPO / ".lab/id_ed25519.pub"


def login(host: dict, user: str, **auth) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.load_host_keys(str(REPO / host["known_hosts"]))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect("127.0.0.1", port=host["ssh_port"], username=user, look_for_keys=False, allow_agent=False,
                   timeout=10, **auth)
    return client


def with_key(host: dict) -> dict:
    return {"key_filename": str(REPO / api.state()["ssh_key"])}


def test_the_admins_key_gets_in_with_the_hardened_algorithms(converged_host):
    client = login(converged_host, "admin", **with_key(converged_host))
    try:
        transport = client.get_transport()
        assert transport.is_authenticated()
        # what this client and the server agreed on, from the lists the drop-in allows
        assert transport.remote_cipher in ("aes256-ctr", "aes192-ctr", "aes128-ctr", "aes256-gcm@openssh.com",
                                           "aes128-gcm@openssh.com", "chacha20-poly1305@openssh.com")
    finally:
        client.close()


def test_passwords_are_not_offered(converged_host):
    with pytest.raises(paramiko.BadAuthenticationType) as refused:
        login(converged_host, "admin", password="guess-1234")
    assert refused.value.allowed_types == ["publickey"]


@pytest.mark.parametrize("user", ["root", "intruder"])
def test_root_and_accounts_outside_allow_users_are_refused_even_with_a_key(converged_host, user):
    name, key = converged_host["name"], PUBLIC_KEY.read_text().strip()
    home = "/root" if user == "root" else f"/home/{user}"
    setup = "" if user == "root" else f"id {user} >/dev/null 2>&1 || useradd -m {user}; "
    api.exec(name, f"{setup}install -d -m 700 -o {user} {home}/.ssh && echo '{key}' > {home}/.ssh/authorized_keys "
                   f"&& chown {user} {home}/.ssh/authorized_keys && chmod 600 {home}/.ssh/authorized_keys", check=True)
    try:
        with pytest.raises(paramiko.AuthenticationException):
            login(converged_host, user, **with_key(converged_host))
    finally:
        api.exec(name, f"rm -f {home}/.ssh/authorized_keys" + ("" if user == "root" else f"; userdel -r {user}"))

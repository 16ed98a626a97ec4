"""tasks/base.py: the administrator's sshd is hardened and stays on its own port."""


def test_sshd_effective_settings(target):
    effective = dict(
        line.split(" ", 1) for line in target.sudo("sshd -T").stdout.splitlines() if " " in line
    )
    assert effective["port"] == str(target.data["admin_ssh_port"])
    assert effective["permitrootlogin"] == "no"
    assert effective["passwordauthentication"] == "no"
    assert effective["kbdinteractiveauthentication"] == "no"
    assert effective["x11forwarding"] == "no"
    assert effective["allowtcpforwarding"] == "no"


def test_sshd_running_and_enabled(target):
    ssh = target.host.service("ssh")
    assert ssh.is_running and ssh.is_enabled


def test_time_zone(target):
    assert target.host.file("/etc/localtime").linked_to == f"/usr/share/zoneinfo/{target.data['timezone']}"

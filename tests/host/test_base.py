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
    assert target.service("ssh") == (True, True)


def test_time_zone(target):
    zone = target.sudo(f"readlink -f /etc/localtime /usr/share/zoneinfo/{target.data['timezone']}").stdout.split()
    assert len(zone) == 2 and zone[0] == zone[1]


def test_security_updates_are_automatic(target):
    assert target.host.package("unattended-upgrades").is_installed
    config = target.sudo("apt-config dump").stdout
    assert 'APT::Periodic::Unattended-Upgrade "1";' in config
    assert 'DPkg::Lock::Timeout "600";' in config
    # Debian's default origins: the security archive is among them
    assert "label=Debian-Security" in target.sudo("cat /etc/apt/apt.conf.d/50unattended-upgrades").stdout

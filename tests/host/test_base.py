"""tasks/base.py: the administrator's sshd is hardened and stays on its own port."""


def test_sshd_effective_settings(target):
    shown = target.sudo("sshd -T").stdout.splitlines()
    effective = dict(line.split(" ", 1) for line in shown if " " in line)
    assert sorted(line.split(" ", 1)[1] for line in shown if line.startswith("allowusers ")) == sorted(
        target.data["ssh_allow_users"])
    assert int(effective["maxauthtries"]) <= 3 and effective["loglevel"] == "VERBOSE"
    assert effective["permitemptypasswords"] == "no" and effective["permituserenvironment"] == "no"
    assert not [mac for mac in effective["macs"].split(",") if "sha1" in mac or "md5" in mac], effective["macs"]
    assert not [kex for kex in effective["kexalgorithms"].split(",") if "sha1" in kex], effective["kexalgorithms"]
    assert not [c for c in effective["ciphers"].split(",") if "cbc" in c or "3des" in c], effective["ciphers"]
    assert effective["port"] == str(target.data["admin_ssh_port"])
    assert effective["permitrootlogin"] == "no"
    assert effective["passwordauthentication"] == "no"
    assert effective["kbdinteractiveauthentication"] == "no"
    assert effective["x11forwarding"] == "no"
    assert effective["allowagentforwarding"] == "no"
    assert effective["permittunnel"] == "no"
    # Forwarding: local only, to exactly the monitoring UIs on loopback (docs/runbooks/monitoring.md);
    # tests/lab/test_ssh_forwarding.py proves sshd refuses any other destination.
    assert effective["allowtcpforwarding"] == "local"
    assert effective["allowstreamlocalforwarding"] == "no"
    assert effective["permitlisten"] == "none"
    assert effective["permitopen"].split() == [
        f"127.0.0.1:{target.data[key]}" for key in ("prometheus_port", "alertmanager_port", "grafana_port")]


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


def test_the_journal_is_kept_on_disk_within_its_caps(target):
    config = target.sudo("systemd-analyze cat-config systemd/journald.conf").stdout
    assert "Storage=persistent" in config and f"SystemMaxUse={target.data['journal_max_use']}" in config
    assert f"MaxRetentionSec={target.data['journal_max_retention']}" in config
    machine = target.host.file("/etc/machine-id").content_string.strip()
    assert target.host.file(f"/var/log/journal/{machine}/system.journal").exists, "journald does not write to disk"

"""tasks/hardening.py: which sysctls a host gets, and what must never be among them."""

import yaml

from tasks import REPO, hardening
from tests.unit.render import render, sample_data


def test_a_host_of_its_own_gets_the_kernel_settings_too():
    assert hardening.wanted(sample_data()) == {**hardening.NET, **hardening.KERNEL}  # sysctl_kernel: true


def test_a_host_sharing_a_kernel_gets_only_per_namespace_settings():
    """The lab's hosts are containers: a kernel.* or fs.* value would be set on the machine
    running the lab. net.core.* is not per namespace either."""
    keys = hardening.wanted(sample_data(sysctl_kernel=False))
    assert keys == hardening.NET
    assert all(k.startswith(("net.ipv4.", "net.ipv6.")) for k in keys), keys


def test_docker_keeps_forwarding_and_ipv6_keeps_its_routes():
    keys = hardening.wanted(sample_data())
    assert not [k for k in keys if k.endswith(("ip_forward", ".forwarding", "accept_ra"))]


def test_the_drop_in_is_one_key_per_line_with_integers():
    conf = hardening.sysctl_conf({"net.ipv4.tcp_syncookies": 1, "kernel.sysrq": 0})
    assert conf.splitlines()[1:] == ["net.ipv4.tcp_syncookies = 1", "kernel.sysrq = 0"]


def test_unused_modules_are_refused_and_vfat_is_not():
    lines = [line for line in (REPO / "files/hardening/modprobe.conf").read_text().splitlines()
             if line and not line.startswith("#")]
    assert all(line.startswith("install ") and line.endswith(" /bin/false") for line in lines), lines
    refused = {line.split()[1] for line in lines}
    assert {"cramfs", "squashfs", "udf", "hfsplus", "dccp", "sctp"} <= refused and "vfat" not in refused


def test_no_container_may_dump_core():
    compose = yaml.safe_load(render("gitea/compose.yaml.j2", grafana_enabled=True))
    assert {name: s.get("ulimits") for name, s in compose["services"].items()} == \
        {name: {"core": 0} for name in compose["services"]}

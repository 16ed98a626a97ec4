"""tasks/firewall.py and its rules, without a host: what the template renders from the inventory,
and that nft itself accepts it (`nft -c`, where this machine has nft). tests/host/test_firewall.py
reads the loaded ruleset; tests/lab/test_firewall.py attacks it from another address."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tasks import firewall
from tests.conftest import skip_because
from tests.unit.render import render, sample_data


def rules(**values) -> str:
    return render("firewall/firewall.nft.j2", **values)


def test_only_the_projects_table_is_replaced_never_the_ruleset():
    text = rules()
    assert not [line for line in text.splitlines() if "flush" in line and not line.lstrip().startswith("#")]
    assert text.index("table inet gitea_deploy {}") < text.index("delete table inet gitea_deploy")
    assert text.count("\ntable ") == 2  # the empty one (so the delete never fails) and the real one


def test_inbound_is_dropped_but_for_the_public_ports():
    text = rules(admin_ssh_port=2200)
    assert "type filter hook input priority filter; policy drop;" in text
    assert "\t\ttcp dport 2200 accept" in text and "tcp dport { 80, 443 } accept" in text


def test_dhcpv6_answers_are_let_in_from_the_link_only():
    """An IPv6 lease (EC2's enable_ipv6) is renewed by DHCPv6, whose answer conntrack cannot tie to
    the multicast request: without this rule the address would lapse."""
    assert "ip6 saddr fe80::/10 udp sport 547 udp dport 546 accept" in rules()


def test_published_container_ports_pass_only_by_their_original_port():
    text = rules(git_ssh_port=22)
    assert "type filter hook forward priority filter - 10; policy drop;" in text
    assert "ct status dnat meta l4proto tcp ct original proto-dst { 22 } accept" in text


def test_admin_cidrs_narrow_the_admin_port_by_family():
    text = rules(admin_ssh_port=2222, admin_cidrs=["203.0.113.7/32", "2001:db8::/48", "198.51.100.0/24"])
    assert "ip saddr { 203.0.113.7/32, 198.51.100.0/24 } tcp dport 2222 accept" in text
    assert "ip6 saddr { 2001:db8::/48 } tcp dport 2222 accept" in text
    assert "\t\ttcp dport 2222 accept" not in text  # no rule for everyone besides them


def test_a_cidr_with_host_bits_is_its_network():
    context = firewall.contexts(sample_data(admin_cidrs=["203.0.113.7/24"]))["firewall/firewall.nft.j2"]
    assert context["admin"]["v4"] == ["203.0.113.0/24"]


@pytest.mark.parametrize("cidrs", [["203.0.113.7/32"], ["2001:db8::/48"], []])
def test_nft_accepts_the_rules(tmp_path, cidrs):
    nft = shutil.which("nft") or "/usr/sbin/nft"
    if not shutil.which(nft):
        skip_because("nft (Debian's nftables) is not installed here: the host check and the lab test load the rules")
    path = tmp_path / "firewall.nft"
    path.write_text(rules(admin_cidrs=cidrs))
    cp = subprocess.run([nft, "-c", "-f", str(path)], capture_output=True, text=True)
    if cp.returncode != 0 and "Operation not permitted" in cp.stderr:
        skip_because(f"nft -c needs CAP_NET_ADMIN, which this process lacks: {cp.stderr.strip()}")
    assert cp.returncode == 0, cp.stderr

"""templates/fail2ban/jail.local.j2 and files/fail2ban/: what fail2ban reads, parsed the way it
parses it (an INI file; its values lose trailing whitespace). The filters meet fail2ban itself in
tests/lab/test_fail2ban.py (fail2ban-regex on the host, and real attacks)."""

import configparser

import pytest
import yaml

from tasks import REPO
from tasks.fail2ban import FILTERS
from tasks.nginx import REFUSED_LOG
from tests.unit.render import render
from tests.unit.test_templates import _nginx_directives


def jails(**values) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(render("fail2ban/jail.local.j2", **values))
    return parser


def test_jails_and_their_sources():
    parsed = jails()
    assert parsed.sections() == ["sshd", "gitea-web", "gitea-git-ssh", "gitea-basic-auth", "gitea-rate-limited"]
    assert {s: parsed[s]["backend"] for s in parsed.sections()} == {
        "sshd": "systemd", "gitea-web": "systemd", "gitea-git-ssh": "systemd",
        "gitea-basic-auth": "polling", "gitea-rate-limited": "polling"}
    assert parsed["gitea-web"]["journalmatch"] == parsed["gitea-git-ssh"]["journalmatch"] == "CONTAINER_TAG=gitea"
    assert parsed["gitea-basic-auth"]["logpath"] == parsed["gitea-rate-limited"]["logpath"] == REFUSED_LOG
    assert all(parsed[s]["enabled"] == "true" for s in parsed.sections())


def test_every_filter_a_jail_names_is_shipped_and_every_shipped_one_is_used():
    named = {jails()[s]["filter"] for s in jails().sections() if "filter" in jails()[s]}
    assert named == set(FILTERS)
    assert all((REPO / "files/fail2ban" / f"{name}.conf").is_file() for name in FILTERS)


def test_limits_and_ports_come_from_the_inventory():
    parsed = jails(fail2ban_maxretry=3, fail2ban_findtime=120, fail2ban_bantime=86400,
                   fail2ban_rate_limited_maxretry=50, admin_ssh_port=2202)
    assert [parsed.defaults()[k] for k in ("maxretry", "findtime", "bantime")] == ["3", "120", "86400"]
    assert parsed["sshd"]["port"] == "2202"
    assert (parsed["gitea-rate-limited"]["maxretry"], parsed["gitea-rate-limited"]["findtime"]) == ("50", "60")


def test_git_ssh_is_banned_on_the_forward_path_on_every_port():
    """Docker publishes it: DNATed packets pass forward, never input, and reach the container on
    its own port (2222), so the ban cannot name the published one."""
    action = jails()["gitea-git-ssh"]["action"]
    assert action == "nftables[type=allports, chain_hook=forward, chain=f2b-forward]"
    assert "action" not in jails()["sshd"]  # Debian's banaction: input hook, the jail's port


def test_operator_networks_are_ignored_as_networks():
    ignored = jails(fail2ban_ignore_cidrs=["198.51.100.7/24", "2001:db8::/32"]).defaults()["ignoreip"].split()
    assert ignored == ["127.0.0.0/8", "::1", "198.51.100.0/24", "2001:db8::/32"]


def test_filter_values_keep_no_trailing_whitespace_they_need():
    """configparser (and fail2ban) strip a value's trailing blanks: a regex piece ending in a space
    silently loses it and then matches nothing (it happened: the Gitea prefix)."""
    for name in FILTERS:
        raw = (REPO / "files/fail2ban" / f"{name}.conf").read_text()
        assert [line for line in raw.splitlines() if line != line.rstrip()] == [], name


@pytest.mark.parametrize("name", FILTERS)
def test_filters_take_only_an_address(name):
    """<ADDR>, not <HOST>: a host name in a log line is never looked up and banned."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(REPO / "files/fail2ban" / f"{name}.conf")
    regex = parser["Definition"]["failregex"]
    assert "<ADDR>" in regex and "<HOST>" not in regex


def test_nginx_limits_the_sign_in_posts_and_the_api_but_not_the_health_check():
    https = _nginx_directives(render("nginx/gitea-https.conf.j2", nginx_login_rate=6, nginx_api_rate=20))
    top = {(name, args) for blocks, name, args in https if not blocks}
    assert ("limit_req_zone", "$gitea_deploy_login_key zone=gitea_login:10m rate=6r/m") in top
    assert ("limit_req_zone", "$binary_remote_addr zone=gitea_api:10m rate=20r/s") in top
    assert ("limit_req_status", "429") in top
    limits = {blocks[-1]: args for blocks, name, args in https if name == "limit_req"}
    assert limits == {"location = /user/login": "zone=gitea_login burst=5 nodelay",
                      "location /api/": "zone=gitea_api burst=20 nodelay"}
    assert "location = /api/healthz" in {blocks[-1] for blocks, _, _ in https if len(blocks) > 1}


def test_nginx_writes_the_refused_log_with_its_own_values_only():
    https = _nginx_directives(render("nginx/gitea-https.conf.j2"))
    assert ("log_format", 'gitea_deploy_refused "$time_iso8601 $remote_addr $status"') in \
        {(name, args) for blocks, name, args in https if not blocks}
    logs = [args for blocks, name, args in https if name == "access_log"]
    assert f"{REFUSED_LOG} gitea_deploy_refused if=$gitea_deploy_refused" in logs



def test_gitea_logs_to_the_journal_under_the_tag_the_jails_match():
    compose = yaml.safe_load(render("gitea/compose.yaml.j2", grafana_enabled=True))
    tags = {name: (s["logging"]["driver"], s["logging"]["options"]["tag"]) for name, s in compose["services"].items()}
    assert tags == {"db": ("journald", "postgres"), "gitea": ("journald", "gitea"), "grafana": ("journald", "grafana")}
    assert jails()["gitea-web"]["journalmatch"] == f"CONTAINER_TAG={tags['gitea'][1]}"

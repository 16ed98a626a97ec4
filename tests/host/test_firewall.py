"""tasks/firewall.py: the project's nftables table is loaded as the inventory says, by its own unit,
beside Docker's tables (never instead of them). What it lets through from outside is
tests/host/test_exposure.py's; tests/lab/test_firewall.py attacks it from another address."""

from tasks.firewall import RULES, UNIT


def loaded(target) -> str:
    return target.sudo("nft list table inet gitea_deploy").stdout


def test_the_table_drops_what_it_does_not_allow(target):
    table = loaded(target)
    assert "hook input priority filter; policy drop;" in table, table
    assert "hook forward priority filter - 10; policy drop;" in table, table
    assert f"tcp dport {target.data['admin_ssh_port']} accept" in table, table
    assert f"ct original proto-dst {target.data['git_ssh_port']} accept" in table, table


def test_it_is_loaded_from_its_file_by_its_unit_at_boot(target):
    rules = target.host.file(RULES)
    assert (rules.user, rules.mode) == ("root", 0o600)
    assert target.service(UNIT) == (True, True)
    # Debian's unit would load /etc/nftables.conf, whose `flush ruleset` wipes Docker's rules.
    assert target.service("nftables.service")[1] is False


def test_dockers_own_rules_are_untouched(target):
    nat = target.sudo("nft list table ip nat").stdout
    assert "DOCKER" in nat and "dnat to" in nat, nat

"""The variables' validation blocks refuse what would fail late (or be unsafe), for real.

terraform/variables.tf alone is copied to a temp dir: a configuration with variables only needs no
provider, so `terraform plan -var ...` evaluates every validation in well under a second.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
from tf_support import TF_SRC

pytestmark = pytest.mark.terraform

VALID = {
    "region": "eu-central-1",
    "admin_cidrs": ["203.0.113.7/32"],
    "admin_ssh_public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIValidValidValidValidValidValidValidValidVali op@example.org",
    "gitea_domain": "git.example.org",
}

REFUSED = {
    "admin port open to IPv4 world": {"admin_cidrs": ["0.0.0.0/0"]},
    "admin port open to IPv6 world": {"admin_cidrs": ["::/0"]},
    "admin port open to a huge range": {"admin_cidrs": ["10.0.0.0/4"]},
    "no admin cidr": {"admin_cidrs": []},
    "admin cidr not a cidr": {"admin_cidrs": ["my office"]},
    "admin port is git ssh": {"admin_ssh_port": 22},
    "admin port is https": {"admin_ssh_port": 443},
    "admin port out of range": {"admin_ssh_port": 70000},
    "graviton type with amd64 ami": {"instance_type": "t4g.small"},
    "amd64 type with arm64 ami": {"ami_ssm_parameter": "/aws/service/debian/release/13/latest/arm64"},
    "existing zone without id": {"dns_zone_mode": "existing"},
    "zone not a parent of the domain": {"dns_zone_name": "example.com"},
    "domain with trailing dot": {"gitea_domain": "git.example.org."},
    "reserved ssm path": {"ssm_parameter_path": "/aws/gitea"},
    "Name in tags": {"tags": {"Name": "x"}},
    "postgres without forced tls": {"db_engine_version": "14"},
    "zones of another region": {"availability_zones": ["eu-west-1a", "eu-west-1b"]},
    "bad backup prefix": {"backup_s3_prefix": "/gitea/"},
    "vpc too small": {"vpc_cidr": "10.0.0.0/24"},
    "bad log retention": {"log_retention_days": 42},
    "smtp port out of range": {"smtp_egress_port": 70000},
    "smtp port not whole": {"smtp_egress_port": 587.5},
    "smtp port already open": {"smtp_egress_port": 443},
    "heartbeat period shorter than the beat": {"heartbeat_period_seconds": 30},
    "heartbeat period not whole minutes": {"heartbeat_period_seconds": 90},
    "heartbeat never evaluated": {"heartbeat_evaluation_periods": 0},
    "heartbeat evaluated over more than a day": {"heartbeat_period_seconds": 3600, "heartbeat_evaluation_periods": 25},
}

ACCEPTED = {
    "defaults": {},
    "ipv6 admin range": {"admin_cidrs": ["2001:db8::/48", "198.51.100.0/24"]},
    "graviton with arm64 ami": {"instance_type": "t4g.small",
                                "ami_ssm_parameter": "/aws/service/debian/release/13/latest/arm64"},
    "pinned ami": {"instance_type": "t4g.small", "ami_id": "ami-0123456789abcdef0"},
    "existing zone": {"dns_zone_mode": "existing", "dns_zone_id": "Z0123456789ABCDEFGHIJ"},
    "parent zone": {"dns_zone_name": "example.org"},
    "rds": {"database": "rds", "db_engine_version": "16"},
    "ses starttls": {"smtp_egress_port": 587},
    "ses tls": {"smtp_egress_port": 465},
    "smtp port 2525": {"smtp_egress_port": 2525},
    "heartbeat every 5 minutes for an hour": {"heartbeat_period_seconds": 300, "heartbeat_evaluation_periods": 12},
    "heartbeat evaluated over exactly a day": {"heartbeat_period_seconds": 3600, "heartbeat_evaluation_periods": 24},
}


@pytest.fixture(scope="module")
def variables_only(tmp_path_factory, terraform_bin):
    directory = tmp_path_factory.mktemp("variables")
    shutil.copy(TF_SRC / "variables.tf", directory / "variables.tf")
    return terraform_bin, directory


def _plan(variables_only, overrides: dict) -> subprocess.CompletedProcess:
    terraform, directory = variables_only
    var_file = directory / f"case-{abs(hash(json.dumps(overrides, sort_keys=True)))}.tfvars.json"
    var_file.write_text(json.dumps({**VALID, **overrides}))
    return subprocess.run([terraform, f"-chdir={directory}", "plan", "-input=false", "-no-color", "-lock=false",
                           f"-var-file={var_file}"],
                          capture_output=True, text=True, timeout=120, check=False,
                          env={"PATH": "/usr/bin:/bin", "TF_CLI_CONFIG_FILE": "/dev/null", "CHECKPOINT_DISABLE": "1"})


def _run_all(variables_only, cases: dict) -> dict[str, subprocess.CompletedProcess]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(cases, pool.map(lambda o: _plan(variables_only, o), cases.values()), strict=True))


def test_unsafe_or_late_failing_values_are_refused(variables_only):
    results = _run_all(variables_only, REFUSED)
    accepted = [name for name, proc in results.items() if proc.returncode == 0 or "Invalid value for variable" not in proc.stderr]
    assert not accepted, "accepted although they must be refused:\n" + "\n".join(
        f"- {name}: exit {results[name].returncode} {results[name].stderr[-300:]}" for name in accepted)


def test_sound_values_are_accepted(variables_only):
    results = _run_all(variables_only, ACCEPTED)
    refused = {name: proc.stderr[-800:] for name, proc in results.items() if proc.returncode != 0}
    assert not refused, refused

"""Lab hosts: throwaway Debian 13 containers made by `python -m lab up` (see docs/lab.md).

The lab differs from production only in this data: the ACME directory and its CA, the image
references (the lab registry) and how to reach the hosts. No task has a lab-only code path.
"""

import json
from pathlib import Path

from tasks.settings import SettingsError, checked_hosts

_REPO = Path(__file__).resolve().parents[1]
_STATE = _REPO / ".lab" / "state.json"

if not _STATE.exists():
    raise SettingsError(f"no lab state at {_STATE}: run `make lab` (or `python -m lab up NAME`) first")

_state = json.loads(_STATE.read_text())
_ca_bundle = (_REPO / _state["acme_ca_bundle"]).read_text()

_lab_data = {
    "gitea_domain": "git.lab.test",
    "gitea_admin_email": "gitadmin@lab.test",
    "acme_email": "ops@lab.test",
    "acme_server": "https://127.0.0.1:14000/dir",  # pebble, in each host's network namespace
    "acme_ca_bundle": _ca_bundle,
    "gitea_image": _state["images"]["gitea"],
    "postgres_image": _state["images"]["postgres"],
    # Backups: the emulated AWS (moto) answers on 127.0.0.1:5050 in every host, and takes any static
    # key; Terraform's outputs give production its bucket, region and SSM path, the instance role its keys.
    "aws_region": "us-east-1",
    "s3_endpoint": "http://127.0.0.1:5050",
    "backup_s3_bucket": "gitea-lab-backups",
    "backup_aws_access_key_id": "lab-moto-key",
    "backup_aws_secret_access_key": "lab-moto-not-secret",
    "ssm_parameter_path": "/gitea-deploy/lab",
    "backup_local_repository": "/srv/gitea/backup/restic",
}

lab = checked_hosts(
    [
        (
            name,
            {
                # The host's own address on the lab network, as an EC2 instance's public IP:
                # outside checks (tests/host) reach exactly what the internet would.
                "ssh_hostname": h["ip"],
                "ssh_port": h.get("admin_ssh_port", 2222),
                "admin_ssh_port": h.get("admin_ssh_port", 2222),
                "ssh_user": "admin",
                "ssh_key": str(_REPO / _state["ssh_key"]),
                "ssh_known_hosts_file": str(_REPO / h["known_hosts"]),
                "ssh_strict_host_key_checking": "accept-new",
                "_sudo": True,
                **_lab_data,
            },
        )
        for name, h in sorted(_state["hosts"].items())
    ],
    group="lab",
)

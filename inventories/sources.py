"""Where production hosts come from: Terraform's outputs, or running EC2 instances found by tag.

Both functions return pyinfra host tuples, ``[(hostname, data), ...]``, whose data carries the keys
the deploy reads (docs/dev/contracts.md): ``ssh_hostname``, ``ssh_port``, ``ssh_user``,
``admin_ssh_port``, ``gitea_domain``, ``aws_region``, ``backup_s3_bucket``, ``backup_s3_prefix``,
``ssm_parameter_path``, ``database_endpoint``, ``metrics_namespace``, ``heartbeat_metric``,
``alert_sns_topic_arn``.

Both raise ``LookupError`` with an actionable message when they find no host, so an inventory
built from them fails loudly instead of deploying to nobody.

- ``from_terraform()`` reads the ``pyinfra_inventory`` output of ``terraform/`` (the same output
  pyinfra's own ``@terraform`` connector understands).
- ``with_overrides()`` lays an environment's own values over the hosts: only the keys in
  ``ENVIRONMENT_KEYS`` (how to reach the hosts, the ACME directory and CA, image references,
  emulated AWS) and ``OPERATOR_KEYS``; the lab is production plus such a file.
- ``from_ec2_tags()`` asks EC2 for running instances carrying a tag, and reads the host data back
  from the ``gitea-deploy:*`` tags Terraform puts on the instance (terraform/main.tf,
  ``local.discovery_tags``). Use it where no Terraform state is at hand (another machine, CI).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent

HOST_KEYS = (
    "ssh_hostname",
    "ssh_port",
    "ssh_user",
    "admin_ssh_port",
    "gitea_domain",
    "aws_region",
    "backup_s3_bucket",
    "backup_s3_prefix",
    "ssm_parameter_path",
    "database_endpoint",
    "metrics_namespace",
    "heartbeat_metric",
    "alert_sns_topic_arn",
)

# Debian's AMIs log in as `admin` (docs/dev/contracts.md).
SSH_USER = "admin"

# Instance tags written by terraform/main.tf (local.discovery_tags) -> host data keys.
TAG_PREFIX = "gitea-deploy:"
TAG_DOMAIN = TAG_PREFIX + "domain"
TAG_ADMIN_PORT = TAG_PREFIX + "admin-port"
TAG_BACKUP_BUCKET = TAG_PREFIX + "backup-bucket"
TAG_BACKUP_PREFIX = TAG_PREFIX + "backup-prefix"
TAG_SSM_PATH = TAG_PREFIX + "ssm-parameter-path"
TAG_DATABASE_INSTANCE = TAG_PREFIX + "database-instance"
TAG_METRICS_NAMESPACE = TAG_PREFIX + "metrics-namespace"
TAG_HEARTBEAT_METRIC = TAG_PREFIX + "heartbeat-metric"
TAG_NAME = TAG_PREFIX + "name"
TAG_ALERTS_TOPIC = TAG_PREFIX + "alerts-topic-arn"

TERRAFORM_TIMEOUT_SECONDS = 120

# What may differ between environments beyond Terraform's outputs (docs/dev/contracts.md): where
# and how to reach the hosts, the ACME directory and its CA, image references, emulated AWS. The
# lab is the production inventory plus these; overriding anything else is an error.
ENVIRONMENT_KEYS = frozenset({
    "ssh_hostname", "ssh_port", "ssh_key", "ssh_known_hosts_file", "ssh_strict_host_key_checking",
    "acme_server", "acme_ca_bundle",
    # The CA the HTTPS probe verifies the served certificate against (a private ACME server's root).
    "monitoring_tls_ca_bundle",
    "gitea_image", "postgres_image",
    "s3_endpoint", "backup_aws_access_key_id", "backup_aws_secret_access_key", "alert_sns_api_url",
    "mailer_host", "mailer_port", "mailer_protocol",
    # An external PostgreSQL's address and CA (Terraform gives RDS's endpoint; the lab its stand-in's).
    "database_endpoint", "database_ca_bundle",
    # Whether the kernel is the host's own (tasks/hardening.py): the lab's hosts share yours.
    "sysctl_kernel",
})
# Values only the operator knows, asked for by group_data/prod.py; an overrides file may carry them.
OPERATOR_KEYS = frozenset({"acme_email", "gitea_admin_email"})


def from_terraform(
    chdir: str | Path = "terraform",
    outputs_json: dict[str, Any] | None = None,
    outputs_file: str | Path | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """Hosts from ``terraform output -json`` of the root module in ``chdir``.

    ``chdir`` is resolved against the repository root when relative, so this works whatever the
    current directory is. Pass ``outputs_json`` (the parsed output of ``terraform output -json``)
    or ``outputs_file`` (a recording of it) to skip running terraform.
    """
    if outputs_json is None and outputs_file is not None:
        outputs_json = _json_file(outputs_file, "a recorded `terraform output -json`")
    if outputs_json is None:
        outputs_json = _terraform_outputs(chdir)

    if not isinstance(outputs_json, dict):
        raise LookupError("terraform output is not a JSON object: expected the output of `terraform output -json`")

    inventory = outputs_json.get("pyinfra_inventory")
    if inventory is None:
        raise LookupError(
            "terraform output has no pyinfra_inventory: run `terraform -chdir=terraform apply` first "
            "(or check that the backend points at the right state)"
        )
    hosts = inventory.get("value") if isinstance(inventory, dict) and "value" in inventory else inventory
    if not isinstance(hosts, list):
        raise LookupError(f"terraform output pyinfra_inventory must be a list of hosts, got {type(hosts).__name__}")
    if not hosts:
        raise LookupError("terraform output pyinfra_inventory is empty: the applied state has no Gitea host")

    result = []
    for index, item in enumerate(hosts):
        if not isinstance(item, dict):
            raise LookupError(f"pyinfra_inventory[{index}] must be an object, got {type(item).__name__}")
        data = dict(item)
        name = data.pop("name", None) or data.get("ssh_hostname")
        missing = [key for key in HOST_KEYS if key not in data]
        if not name or missing:
            raise LookupError(
                f"pyinfra_inventory[{index}] lacks {', '.join(missing) or 'name'}: "
                "terraform/outputs.tf and inventories/sources.py disagree; re-run `terraform apply`"
            )
        if not data.get("ssh_hostname"):
            raise LookupError(f"pyinfra_inventory[{index}] ({name}) has no ssh_hostname yet: run `terraform apply`")
        result.append((str(name), _normalise(data)))
    return result


def with_overrides(hosts: list[tuple[str, dict[str, Any]]], overrides: dict[str, Any] | None,
                   ) -> list[tuple[str, dict[str, Any]]]:
    """Every host's data with ``overrides`` laid over it; only environment and operator keys."""
    if not overrides:
        return hosts
    if not isinstance(overrides, dict):
        raise LookupError(f"overrides must be a JSON object of host data keys, got {type(overrides).__name__}")
    allowed = ENVIRONMENT_KEYS | OPERATOR_KEYS
    refused = sorted(set(overrides) - allowed)
    if refused:
        raise LookupError(
            f"overrides may not set {', '.join(refused)}: an environment differs from production only in "
            f"{', '.join(sorted(ENVIRONMENT_KEYS))} (and the operator's {', '.join(sorted(OPERATOR_KEYS))})")
    return [(name, _normalise({**data, **overrides})) for name, data in hosts]


def overrides_file(path: str | Path | None) -> dict[str, Any] | None:
    """The JSON object in ``path`` (GITEA_DEPLOY_OVERRIDES), or None without a path."""
    return _json_file(path, "an overrides file") if path else None


def _json_file(path: str | Path, what: str) -> Any:
    path = Path(path)
    if not path.is_absolute():
        path = REPO_ROOT / path
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise LookupError(f"{path} does not exist ({what})") from None
    except json.JSONDecodeError as exc:
        raise LookupError(f"{path} is not JSON ({what}): {exc}") from None


def from_ec2_tags(
    tag_key: str,
    tag_value: str,
    region: str | None,
    endpoint_url: str | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """Hosts from running EC2 instances tagged ``tag_key=tag_value`` in ``region``.

    Typical call: ``from_ec2_tags("gitea-deploy:name", "gitea", "eu-central-1")``. Credentials come
    from the usual boto3 chain (AWS_PROFILE, environment, SSO); ``region`` None means the profile's
    region. ``endpoint_url`` is for emulated AWS.
    """
    import boto3  # only this path needs it

    session = boto3.session.Session(region_name=region or None)
    region = session.region_name
    if not region:
        raise LookupError("no AWS region to search for the Gitea host: pass region= (or set AWS_REGION)")
    ec2 = session.client("ec2", endpoint_url=endpoint_url)
    filters = [
        {"Name": f"tag:{tag_key}", "Values": [tag_value]},
        {"Name": "instance-state-name", "Values": ["running"]},
    ]
    instances = [
        instance
        for page in ec2.get_paginator("describe_instances").paginate(Filters=filters)
        for reservation in page["Reservations"]
        for instance in reservation["Instances"]
    ]
    if not instances:
        raise LookupError(
            f"no running instance tagged {tag_key}={tag_value} in {region}: "
            "is the instance started, the tag right, and AWS_PROFILE/region the account Terraform applied to?"
        )

    rds = None
    result = []
    for instance in sorted(instances, key=lambda i: (str(i.get("LaunchTime", "")), i["InstanceId"])):
        tags = {tag["Key"]: tag["Value"] for tag in instance.get("Tags", [])}
        instance_id = instance["InstanceId"]
        missing = [key for key in (TAG_DOMAIN, TAG_ADMIN_PORT, TAG_BACKUP_BUCKET, TAG_BACKUP_PREFIX, TAG_SSM_PATH,
                                   TAG_METRICS_NAMESPACE, TAG_HEARTBEAT_METRIC) if key not in tags]
        if missing:
            raise LookupError(
                f"instance {instance_id} (tagged {tag_key}={tag_value}) lacks the tags {', '.join(missing)}: "
                "it was not created by terraform/ of this repository, or an old version; run `terraform apply`"
            )
        address = instance.get("PublicIpAddress")
        if not address:
            raise LookupError(f"instance {instance_id} has no public IPv4 address yet (Elastic IP not associated?)")

        database_endpoint = None
        if tags.get(TAG_DATABASE_INSTANCE):
            if rds is None:
                rds = session.client("rds", endpoint_url=endpoint_url)
            database_endpoint = _rds_endpoint(rds, tags[TAG_DATABASE_INSTANCE])

        admin_port = _port(tags[TAG_ADMIN_PORT], f"tag {TAG_ADMIN_PORT} of {instance_id}")
        data = {
            "ssh_hostname": address,
            "ssh_port": admin_port,
            "ssh_user": SSH_USER,
            "admin_ssh_port": admin_port,
            "gitea_domain": tags[TAG_DOMAIN],
            "aws_region": region,
            "backup_s3_bucket": tags[TAG_BACKUP_BUCKET],
            "backup_s3_prefix": tags[TAG_BACKUP_PREFIX],
            "ssm_parameter_path": tags[TAG_SSM_PATH],
            "database_endpoint": database_endpoint,
            "metrics_namespace": tags[TAG_METRICS_NAMESPACE],
            "heartbeat_metric": tags[TAG_HEARTBEAT_METRIC],
            # An instance tagged before alerting existed has none: no SNS receiver until re-applied.
            "alert_sns_topic_arn": tags.get(TAG_ALERTS_TOPIC),
        }
        name = tags.get(TAG_NAME) or tags.get("Name") or instance_id
        if any(existing == name for existing, _ in result):
            name = f"{name}-{instance_id}"
        result.append((name, data))
    return result


def _terraform_outputs(chdir: str | Path) -> dict[str, Any]:
    directory = Path(chdir)
    if not directory.is_absolute():
        directory = REPO_ROOT / directory
    terraform = shutil.which("terraform")
    if terraform is None:
        raise LookupError("terraform is not on PATH: install Terraform >= 1.11, or use the EC2 tag source")
    if not directory.is_dir():
        raise LookupError(f"{directory} does not exist: pass chdir= the Terraform root module")
    try:
        completed = subprocess.run(
            [terraform, f"-chdir={directory}", "output", "-json", "-no-color"],
            capture_output=True,
            text=True,
            timeout=TERRAFORM_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise LookupError(f"`terraform output -json` in {directory} took longer than {TERRAFORM_TIMEOUT_SECONDS}s") from exc
    if completed.returncode != 0:
        raise LookupError(
            f"`terraform output -json` failed in {directory} (exit {completed.returncode}): "
            f"{completed.stderr.strip() or completed.stdout.strip()}\n"
            f"Run `terraform -chdir={directory} init -backend-config=backend.hcl` first."
        )
    try:
        return json.loads(completed.stdout or "{}")
    except json.JSONDecodeError as exc:
        raise LookupError(f"`terraform output -json` in {directory} printed no JSON: {exc}") from exc


def _rds_endpoint(rds: Any, identifier: str) -> str:
    try:
        described = rds.describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"]
    except rds.exceptions.DBInstanceNotFoundFault as exc:
        raise LookupError(f"the RDS instance {identifier} named by the host's tags does not exist") from exc
    endpoint = described[0].get("Endpoint") if described else None
    if not endpoint or not endpoint.get("Address"):
        raise LookupError(f"the RDS instance {identifier} has no endpoint yet (still creating?)")
    return f"{endpoint['Address']}:{endpoint.get('Port', 5432)}"


def _port(value: Any, what: str) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise LookupError(f"{what} is not a port number: {value!r}") from None
    if not 1 <= port <= 65535:
        raise LookupError(f"{what} is out of range: {port}")
    return port


def _normalise(data: dict[str, Any]) -> dict[str, Any]:
    """Types as the deploy expects them: ports as int, everything else as given (None kept)."""
    data = dict(data)
    for key in ("ssh_port", "admin_ssh_port"):
        data[key] = _port(data[key], key)
    return data

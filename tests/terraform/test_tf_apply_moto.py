"""Apply terraform/bootstrap and terraform/ against moto, check drift, build the inventory, destroy.

The flow is the runbook's (docs/runbooks/aws.md), against emulated AWS on 127.0.0.1:
  1. bootstrap: apply (state bucket), `plan -detailed-exitcode` = 0, print backend_config
  2. root: init with that backend config (state in the moto bucket, S3-native lock), apply,
     `plan -detailed-exitcode` = 0, outputs -> inventories/sources.py (both paths) -> same hosts
  3. destroy the root, then the bootstrap (its prevent_destroy is lifted by an override file in
     the temporary copy only: lifecycle arguments cannot be variables)

What moto cannot emulate is switched off with variables for the apply: enable_data_volume_snapshots
(no DLM API), enable_budget (no DescribeSubscribersForNotification), enable_ipv6 (it cannot
associate IPv6 blocks with subnets). All three are planned against moto instead, with everything
else terraform/examples/production.tfvars sets, plus database = "rds" (test_example_tfvars_plans).
database = "rds" is applied too when GITEA_DEPLOY_TF_MOTO_RDS=1 (about two minutes longer: the
provider's RDS waiters poll slowly).

Terraform runs overlap where they can (bootstrap apply while the root initialises, the example plan
and the bootstrap plan during the root apply, validate/schema/checkov from other test modules): the
AWS provider costs 10-20 s of CPU per start, and most of an apply against moto is the provider's
own waiters sleeping.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import stat
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tf_support import (
    AMI_PARAMETER,
    FAKE_AWS_ENV,
    LOCAL_BACKEND_OVERRIDE,
    PROTECTED_BUCKET_TEST_OVERRIDE,
    REGION,
    REPO,
    Job,
    Moto,
    Terraform,
    copy_module,
    load_sources,
    moto_root_vars,
    publish_ami_parameter,
    stop,
)

pytestmark = pytest.mark.terraform

yaml = pytest.importorskip("yaml", reason="PyYAML (installed with moto[server]) is needed to read the cloud-config")
sources = load_sources()

NAME = "gitea-moto"
DOMAIN = "git.moto.test"
ADMIN_PORT = 2345  # not the default: proves the value flows through every layer
ADMIN_CIDRS = ["203.0.113.7/32", "2001:db8::/48"]
SMTP_PORT = 2525  # not the example's 587: proves the variable, not a default, opens it
STATE_BUCKET = "gitea-deploy-moto-tfstate"
APPLY_RDS = os.environ.get("GITEA_DEPLOY_TF_MOTO_RDS") == "1"

# Differences moto reports that real AWS does not (each explained); anything else is drift.
# moto keeps a security group rule's description only for CIDR rules, not for rules that reference
# another security group (moto/ec2/models/security_groups.py: description reads ip_range only).
KNOWN_MOTO_DRIFT = {
    ("aws_vpc_security_group_ingress_rule", "description"),
    ("aws_vpc_security_group_egress_rule", "description"),
}

TIMEOUT = 420


@dataclass
class Stack:
    moto: Moto
    root: Terraform
    bootstrap: Terraform
    var_file: Path
    bootstrap_var_file: Path
    outputs: dict
    bootstrap_outputs: dict
    tf_env: dict
    jobs: dict[str, Job] = field(default_factory=dict)
    destroyed: bool = False


def _plan_args(var_file: Path, *extra: str) -> list[str]:
    return ["plan", "-input=false", "-no-color", f"-var-file={var_file}", *extra]


@pytest.fixture(scope="module")
def stack(tmp_path_factory, terraform_bin, tf_env, moto_server, checkov_job, workspace, pre_module_stack):  # noqa: ARG001
    # checkov_job, workspace and pre_module_stack only start their background work early (they
    # overlap the apply).
    base = tmp_path_factory.mktemp("apply")
    env = dict(tf_env)
    # Backstop: a service missing from the provider's endpoints {} still lands on moto, never AWS.
    env["AWS_ENDPOINT_URL"] = moto_server.url

    root = Terraform(terraform_bin, copy_module(base / "terraform"), env)
    bootstrap = Terraform(terraform_bin, root.dir / "bootstrap", env)
    # The state bucket is the module's protected bucket; the override reaches it in this copy only.
    # The test empties the bucket itself before destroying it (see test_destroy).
    (root.dir / "modules" / "private-bucket" / "zz_test_override.tf").write_text(PROTECTED_BUCKET_TEST_OVERRIDE)
    example = Terraform(terraform_bin, copy_module(base / "example" / "terraform"), env)
    (example.dir / "zz_test_override.tf").write_text(LOCAL_BACKEND_OVERRIDE)

    publish_ami_parameter(moto_server)

    bootstrap_var_file = base / "bootstrap.auto.tfvars.json"
    bootstrap_var_file.write_text(json.dumps({
        "region": REGION, "state_bucket_name": STATE_BUCKET, "aws_endpoint_url": moto_server.url,
    }))
    var_file = base / "moto.tfvars.json"
    moto_vars = moto_root_vars(
        moto_server, base, NAME, DOMAIN,
        admin_cidrs=ADMIN_CIDRS, admin_ssh_port=ADMIN_PORT, smtp_egress_port=SMTP_PORT,
        database="rds" if APPLY_RDS else "container",
    )
    var_file.write_text(json.dumps(moto_vars, indent=2))
    example_var_file = base / "example-moto.tfvars.json"
    example_var_file.write_text(json.dumps({"aws_endpoint_url": moto_server.url, "ami_ssm_parameter": AMI_PARAMETER}))

    stack = Stack(moto_server, root, bootstrap, var_file, bootstrap_var_file, {}, {}, env)
    try:
        # 1. bootstrap, in the background: the provider waits about a minute for every S3 lifecycle
        #    configuration to settle, and the root only needs the bucket and its policy.
        bootstrap.run("init", "-input=false", "-no-color", timeout=TIMEOUT)
        stack.jobs["bootstrap-apply"] = bootstrap.start(
            "apply", "-auto-approve", "-input=false", "-no-color", f"-var-file={bootstrap_var_file}", timeout=TIMEOUT)
        root.run("init", "-input=false", "-no-color", "-backend=false", timeout=TIMEOUT)  # providers, meanwhile
        example.run("init", "-input=false", "-no-color", timeout=TIMEOUT)
        _wait_for_state_bucket(moto_server, stack.jobs["bootstrap-apply"])

        # 2. root, its state in that bucket (the example plan runs meanwhile with its own local state).
        #    The backend settings are what bootstrap's backend_config output will print (checked in
        #    test_backend_config_is_what_the_root_used) plus moto's endpoint.
        backend = BACKEND_CONFIG.format(bucket=STATE_BUCKET, region=REGION) + _moto_backend_settings(moto_server.url)
        (root.dir / "backend.hcl").write_text(backend)
        root.run("init", "-input=false", "-no-color", "-reconfigure", "-backend-config=backend.hcl", timeout=TIMEOUT)
        stack.jobs["example"] = example.start(
            "plan", "-input=false", "-no-color", "-json", "-detailed-exitcode",
            f"-var-file={REPO / 'terraform/examples/production.tfvars'}", f"-var-file={example_var_file}",
            "-var=database=rds",  # after the files: the last value wins
            timeout=TIMEOUT)
        apply = root.start("apply", "-auto-approve", "-input=false", "-no-color", f"-var-file={var_file}", timeout=TIMEOUT)
        bootstrap_apply = stack.jobs["bootstrap-apply"].result()
        if bootstrap_apply.returncode != 0:
            pytest.fail(bootstrap_apply.describe(), pytrace=False)
        stack.bootstrap_outputs = bootstrap.outputs()
        stack.jobs["bootstrap-plan"] = bootstrap.start(*_plan_args(bootstrap_var_file, "-detailed-exitcode"), timeout=TIMEOUT)
        applied = apply.result()
        if applied.returncode != 0:
            pytest.fail(applied.describe(), pytrace=False)
        stack.outputs = root.outputs()
        # Takes the state lock: it is the lock's test too.
        stack.jobs["drift"] = root.start(*_plan_args(var_file, "-detailed-exitcode", "-out=drift.tfplan"), timeout=TIMEOUT)
        yield stack
    finally:
        for job in stack.jobs.values():
            stop(job.proc)
        if not stack.destroyed:
            # Best effort after a failure; test_destroy is the real check.
            root.run("destroy", "-auto-approve", "-input=false", "-no-color", f"-var-file={var_file}",
                     timeout=TIMEOUT, check=False)
            with contextlib.suppress(Exception):  # best effort: the bucket may not exist
                _empty_bucket(moto_server, STATE_BUCKET)
            bootstrap.run("destroy", "-auto-approve", "-input=false", "-no-color",
                          f"-var-file={bootstrap_var_file}", timeout=TIMEOUT, check=False)


# What terraform/bootstrap/outputs.tf prints as backend_config for the default state_key.
BACKEND_CONFIG = """bucket       = "{bucket}"
key          = "gitea-deploy/terraform.tfstate"
region       = "{region}"
use_lockfile = true
encrypt      = true
"""


def _wait_for_state_bucket(moto: Moto, job: Job, timeout: float = 180) -> None:
    """Until the bucket exists with its TLS-only policy and versioning (bounded)."""
    s3 = moto.client("s3")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if job.proc.poll() is not None and job.proc.returncode != 0:
            pytest.fail(job.result().describe(), pytrace=False)
        try:
            if "SecureTransport" in s3.get_bucket_policy(Bucket=STATE_BUCKET)["Policy"] and \
                    s3.get_bucket_versioning(Bucket=STATE_BUCKET).get("Status") == "Enabled":
                return
        except s3.exceptions.ClientError:
            pass
        time.sleep(1)
    pytest.fail(f"the state bucket was not ready within {timeout}s:\n{job.result().describe()}", pytrace=False)


def _empty_bucket(moto: Moto, bucket: str) -> None:
    """Delete every version and delete marker, one by one (moto's DeleteObjects fails on delete markers)."""
    s3 = moto.client("s3")
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for item in page.get("Versions", []) + page.get("DeleteMarkers", []):
            s3.delete_object(Bucket=bucket, Key=item["Key"], VersionId=item["VersionId"])


def _moto_backend_settings(url: str) -> str:
    return f"""
# emulated AWS (tests only)
endpoints = {{
  s3  = "{url}"
  sts = "{url}"
  iam = "{url}"
}}
use_path_style              = true
skip_credentials_validation = true
skip_requesting_account_id  = true
skip_metadata_api_check     = true
"""


def _json_lines(text: str) -> list[dict]:
    lines = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):
                lines.append(json.loads(line))
    return lines


def _planned_changes(text: str) -> dict[str, str]:
    """address -> action from `terraform plan -json` output."""
    return {m["change"]["resource"]["addr"]: m["change"]["action"]
            for m in _json_lines(text) if m.get("type") == "planned_change"}


def _errors(text: str) -> list[str]:
    return [f"{m.get('@message')}: {m.get('diagnostic', {}).get('detail', '')}"
            for m in _json_lines(text) if m.get("@level") == "error"]


def _value(outputs: dict, name: str):
    return outputs[name]["value"]


################################################################################
# bootstrap
################################################################################

def test_bootstrap_plan_is_clean(stack):
    result = stack.jobs["bootstrap-plan"].result()
    assert result.returncode == 0, "bootstrap drifted right after apply:\n" + result.describe()


def test_backend_config_is_what_the_root_used(stack):
    assert _value(stack.bootstrap_outputs, "backend_config") == BACKEND_CONFIG.format(bucket=STATE_BUCKET, region=REGION)


def test_state_lives_in_the_bootstrapped_bucket(stack):
    stack.jobs["drift"].result()  # it holds the state lock while it runs
    s3 = stack.moto.client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=STATE_BUCKET).get("Contents", [])]
    assert "gitea-deploy/terraform.tfstate" in keys, keys
    assert not [k for k in keys if k.endswith(".tflock")], f"a lock object was left behind: {keys}"
    assert 'use_lockfile = true' in _value(stack.bootstrap_outputs, "backend_config")

    assert s3.get_bucket_versioning(Bucket=STATE_BUCKET)["Status"] == "Enabled"
    block = s3.get_public_access_block(Bucket=STATE_BUCKET)["PublicAccessBlockConfiguration"]
    assert all(block.values()), block
    rules = s3.get_bucket_encryption(Bucket=STATE_BUCKET)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
    policy = json.loads(s3.get_bucket_policy(Bucket=STATE_BUCKET)["Policy"])
    assert any(s["Effect"] == "Deny" and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
               for s in policy["Statement"]), policy


################################################################################
# root module
################################################################################

def test_root_plan_is_clean(stack):
    result = stack.jobs["drift"].result()
    if result.returncode == 2:
        shown = stack.root.run("show", "-json", "-no-color", "drift.tfplan", timeout=TIMEOUT)
        drift = []
        for change in json.loads(shown.stdout).get("resource_changes", []):
            actions = change["change"]["actions"]
            if actions == ["no-op"] or actions == ["read"]:
                continue
            before, after = change["change"]["before"] or {}, change["change"]["after"] or {}
            changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
            unexplained = {k for k in changed if (change["type"], k) not in KNOWN_MOTO_DRIFT and k != "tags_all"}
            if actions != ["update"] or unexplained:
                drift.append(f"{change['address']} {actions}: {sorted(changed)}")
        assert not drift, "plan after apply is not empty:\n" + "\n".join(drift) + "\n\n" + result.describe()
    else:
        assert result.returncode == 0, result.describe()


def test_outputs_match_the_contract(stack):
    out = stack.outputs
    assert _value(out, "admin_ssh_port") == ADMIN_PORT
    assert _value(out, "gitea_domain") == DOMAIN
    assert _value(out, "aws_region") == REGION
    assert _value(out, "backup_s3_bucket").startswith(f"{NAME}-backups-")
    assert _value(out, "backup_s3_prefix") == "gitea"
    assert _value(out, "ssm_parameter_path") == f"/gitea-deploy/{NAME}"
    assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+", _value(out, "host_address"))
    if APPLY_RDS:
        assert _value(out, "database_endpoint").endswith(":5432")
    else:
        assert "database_endpoint" not in out, "terraform output -json omits null outputs"
    assert len(_value(out, "pyinfra_inventory")) == 1
    assert _value(out, "metrics_namespace") == f"GiteaDeploy/{NAME}"
    assert _value(out, "heartbeat_metric") == "Heartbeat"
    assert _value(out, "heartbeat_alarm_name") == f"{NAME}-heartbeat"


def test_inventory_from_terraform_outputs(stack):
    hosts = sources.from_terraform(outputs_json=stack.outputs)
    assert len(hosts) == 1
    name, data = hosts[0]
    assert name == NAME
    assert data == {
        "ssh_hostname": _value(stack.outputs, "host_address"),
        "ssh_port": ADMIN_PORT,
        "ssh_user": "admin",
        "admin_ssh_port": ADMIN_PORT,
        "gitea_domain": DOMAIN,
        "aws_region": REGION,
        "backup_s3_bucket": _value(stack.outputs, "backup_s3_bucket"),
        "backup_s3_prefix": "gitea",
        "ssm_parameter_path": f"/gitea-deploy/{NAME}",
        "database_endpoint": stack.outputs.get("database_endpoint", {}).get("value"),
        "metrics_namespace": f"GiteaDeploy/{NAME}",
        "heartbeat_metric": "Heartbeat",
        "alert_sns_topic_arn": _value(stack.outputs, "alerts_topic_arn"),
    }


# A recorded `terraform output -json` of this apply: the lab test that runs inventories/prod.py
# (tests/lab/test_prod_inventory.py) reads it, pointed at a lab host. Re-record it with
# GITEA_DEPLOY_RECORD_OUTPUTS=1 after changing terraform/outputs.tf.
RECORDED_OUTPUTS = REPO / "tests/fixtures/terraform-output.json"


def _shape(outputs: dict) -> dict:
    """What must not drift between the live outputs and the recording: names, types, host keys."""
    hosts = _value(outputs, "pyinfra_inventory")
    return {"outputs": {k: v.get("type") and json.dumps(v["type"]) for k, v in outputs.items()},
            "host_keys": sorted(hosts[0]),
            "host": {k: hosts[0][k] for k in ("name", "ssh_port", "ssh_user", "admin_ssh_port", "gitea_domain",
                                              "aws_region", "backup_s3_prefix", "ssm_parameter_path",
                                              "metrics_namespace", "heartbeat_metric")}}


def test_recorded_outputs_are_the_live_ones(stack):
    if os.environ.get("GITEA_DEPLOY_RECORD_OUTPUTS") == "1":
        RECORDED_OUTPUTS.parent.mkdir(parents=True, exist_ok=True)
        RECORDED_OUTPUTS.write_text(json.dumps(stack.outputs, indent=2, sort_keys=True) + "\n")
    recorded = json.loads(RECORDED_OUTPUTS.read_text())
    assert _shape(recorded) == _shape(stack.outputs), (
        f"{RECORDED_OUTPUTS.relative_to(REPO)} is stale: re-record with GITEA_DEPLOY_RECORD_OUTPUTS=1")


def test_inventory_from_terraform_runs_terraform_output(stack, monkeypatch):
    for key, value in stack.tf_env.items():
        monkeypatch.setenv(key, value)
    assert sources.from_terraform(chdir=stack.root.dir) == sources.from_terraform(outputs_json=stack.outputs)


@pytest.fixture
def aws_env(monkeypatch):
    """boto3 in this process: moto's fake credentials, no config files."""
    for key, value in FAKE_AWS_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def test_inventory_from_ec2_tags_matches_terraform(stack, aws_env):
    by_tag = sources.from_ec2_tags("gitea-deploy:name", NAME, REGION, endpoint_url=stack.moto.url)
    assert by_tag == sources.from_terraform(outputs_json=stack.outputs)


def test_inventory_from_ec2_tags_without_a_match_says_why(stack, aws_env):
    with pytest.raises(LookupError, match=r"no running instance tagged gitea-deploy:name=nobody in eu-central-1"):
        sources.from_ec2_tags("gitea-deploy:name", "nobody", REGION, endpoint_url=stack.moto.url)


def test_host_is_hardened(stack):
    ec2 = stack.moto.client("ec2")
    instance_id = _value(stack.outputs, "instance_id")
    instance = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    assert instance["MetadataOptions"]["HttpTokens"] == "required"
    assert instance["MetadataOptions"]["HttpPutResponseHopLimit"] == 1
    assert instance.get("PublicIpAddress") == _value(stack.outputs, "host_address")

    volumes = ec2.describe_volumes(Filters=[{"Name": "attachment.instance-id", "Values": [instance_id]}])["Volumes"]
    assert len(volumes) == 2, volumes
    for volume in volumes:
        assert volume["Encrypted"], volume["VolumeId"]
        assert volume["VolumeType"] == "gp3", volume["VolumeId"]
        tags = {t["Key"]: t["Value"] for t in volume.get("Tags", [])}
        assert tags.get("Project") == "gitea-deploy" and tags.get("Name"), f"{volume['VolumeId']} tags: {tags}"
    data = [v for v in volumes if v["VolumeId"] == _value(stack.outputs, "data_volume_id")]
    assert data and data[0]["Attachments"][0]["Device"] == "/dev/sdf"

    tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
    assert tags["Project"] == "gitea-deploy" and tags["gitea-deploy:admin-port"] == str(ADMIN_PORT)


def test_security_groups(stack):
    ec2 = stack.moto.client("ec2")
    instance_id = _value(stack.outputs, "instance_id")
    instance = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    group_ids = [g["GroupId"] for g in instance["SecurityGroups"]]
    rules = ec2.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": group_ids}])["SecurityGroupRules"]
    world = {"0.0.0.0/0", "::/0"}
    ingress = [r for r in rules if not r["IsEgress"]]
    open_ports = {r["FromPort"] for r in ingress if {r.get("CidrIpv4"), r.get("CidrIpv6")} & world}
    assert open_ports == {80, 443, 22}, open_ports
    admin = [r for r in ingress if r["FromPort"] <= ADMIN_PORT <= r["ToPort"]]
    assert sorted(r.get("CidrIpv4") or r.get("CidrIpv6") for r in admin) == sorted(ADMIN_CIDRS)
    egress = [r for r in rules if r["IsEgress"]]
    egress_ports = {(r["IpProtocol"], r["FromPort"], r["ToPort"]) for r in egress}
    expected = {("tcp", 80, 80), ("tcp", 443, 443), ("tcp", SMTP_PORT, SMTP_PORT)} | (
        {("tcp", 5432, 5432)} if APPLY_RDS else set())
    assert egress_ports == expected, egress_ports
    smtp = [r for r in egress if r["FromPort"] == SMTP_PORT]
    assert [(r.get("CidrIpv4"), r.get("CidrIpv6")) for r in smtp] == [("0.0.0.0/0", None)], smtp  # IPv6 off in moto

    vpc_id = instance["VpcId"]
    default = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc_id]},
                                                    {"Name": "group-name", "Values": ["default"]}])["SecurityGroups"][0]
    assert not default["IpPermissions"] and not default["IpPermissionsEgress"], "default security group not emptied"


def test_backup_bucket_and_host_role(stack):
    s3 = stack.moto.client("s3")
    bucket = _value(stack.outputs, "backup_s3_bucket")
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    assert all(s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"].values())
    rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert any("NoncurrentVersionExpiration" in r and "AbortIncompleteMultipartUpload" in r for r in rules), rules
    assert s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"] == [
        {"ObjectOwnership": "BucketOwnerEnforced"}]
    encryption = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert encryption[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256", encryption
    policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    assert {s["Sid"] for s in policy["Statement"]} == {"DenyInsecureTransport", "DenyOldTLS"}, policy

    iam = stack.moto.client("iam")
    document = iam.get_role_policy(RoleName=f"{NAME}-host", PolicyName="gitea-host")["PolicyDocument"]
    if isinstance(document, str):
        document = json.loads(document)
    statements = document["Statement"]

    def actions(s):
        return [s["Action"]] if isinstance(s["Action"], str) else s["Action"]

    allowed = {a for s in statements if s["Effect"] == "Allow" for a in actions(s)}
    denied = {a for s in statements if s["Effect"] == "Deny" for a in actions(s)}
    assert "s3:DeleteObjectVersion" not in allowed and "s3:DeleteObjectVersion" in denied
    objects = [s for s in statements if s.get("Sid") == "BackupObjects"][0]
    assert objects["Resource"] in (f"arn:aws:s3:::{bucket}/gitea/*", [f"arn:aws:s3:::{bucket}/gitea/*"])
    # Alertmanager may publish to the alerts topic and to no other (tasks/alerting.py).
    topic = _value(stack.outputs, "alerts_topic_arn")
    publish = [s for s in statements if "sns:Publish" in actions(s)]
    assert [s.get("Sid") for s in publish] == ["PublishAlerts"] and publish[0]["Resource"] in (topic, [topic])
    assert _value(stack.outputs, "pyinfra_inventory")[0]["alert_sns_topic_arn"] == topic
    attached = [p["PolicyName"] for p in iam.list_attached_role_policies(RoleName=f"{NAME}-host")["AttachedPolicies"]]
    assert attached == ["AmazonSSMManagedInstanceCore"]
    # The heartbeat: PutMetricData only into the installation's own namespace, nothing else of CloudWatch.
    metrics = [s for s in statements if any(a.startswith("cloudwatch:") for a in actions(s))]
    assert [(s["Effect"], actions(s), s["Condition"]) for s in metrics] == [
        ("Allow", ["cloudwatch:PutMetricData"],
         {"StringEquals": {"cloudwatch:namespace": _value(stack.outputs, "metrics_namespace")}})], metrics


CONCERNS = ["backup", "gitea", "host", "nginx", "postgres"]


def test_one_log_group_per_concern_kept_and_encrypted_written_only_by_the_host(stack):
    groups = _value(stack.outputs, "log_groups")
    assert groups == {c: f"/gitea-deploy/{NAME}/{c}" for c in CONCERNS}
    logs = stack.moto.client("logs")
    described = logs.describe_log_groups(logGroupNamePrefix=f"/gitea-deploy/{NAME}/")["logGroups"]
    live = {g["logGroupName"]: g for g in described if g["logGroupName"] in groups.values()}
    assert sorted(live) == sorted(groups.values())
    kms = stack.moto.client("kms")
    key = kms.describe_key(KeyId=f"alias/{NAME}-logs")["KeyMetadata"]
    assert kms.get_key_rotation_status(KeyId=key["KeyId"])["KeyRotationEnabled"]
    assert {(g["retentionInDays"], g["kmsKeyId"]) for g in live.values()} == {(365, key["Arn"])}
    key_policy = json.loads(kms.get_key_policy(KeyId=key["KeyId"], PolicyName="default")["Policy"])
    uses = [s for s in key_policy["Statement"] if s["Sid"] == "LogsUseTheKeyForTheseGroups"][0]
    assert uses["Principal"] == {"Service": f"logs.{REGION}.amazonaws.com"}
    assert uses["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"].endswith(f":log-group:/gitea-deploy/{NAME}/*")

    document = stack.moto.client("iam").get_role_policy(RoleName=f"{NAME}-host", PolicyName="gitea-host")["PolicyDocument"]
    statements = json.loads(document)["Statement"] if isinstance(document, str) else document["Statement"]
    writes = [s for s in statements if any(a.startswith("logs:") for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"]))]
    assert [(s["Sid"], sorted(s["Action"])) for s in writes] == [
        ("OwnLogGroups", ["logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"])]
    arns = sorted(g["arn"].removesuffix(":*") for g in live.values())
    assert sorted(writes[0]["Resource"]) == sorted(arns + [f"{a}:*" for a in arns])


def test_alarms_and_trail(stack):
    cloudwatch = stack.moto.client("cloudwatch")
    alarms = {a["MetricName"]: a for a in cloudwatch.describe_alarms(AlarmNamePrefix=NAME)["MetricAlarms"]}
    assert set(alarms) == {"StatusCheckFailed_System", "StatusCheckFailed_Instance", "StatusCheckFailed_AttachedEBS",
                           "Heartbeat"}
    assert any(a.endswith(":ec2:recover") for a in alarms["StatusCheckFailed_System"]["AlarmActions"])
    trails = [t for t in stack.moto.client("cloudtrail").describe_trails()["trailList"] if t["Name"] == f"{NAME}-audit"]
    assert trails and trails[0]["IsMultiRegionTrail"] and trails[0]["LogFileValidationEnabled"], trails
    bucket = trails[0]["S3BucketName"]
    s3 = stack.moto.client("s3")
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    assert all(s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"].values())
    policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    assert {s["Sid"] for s in policy["Statement"]} == {"CloudTrailAclCheck", "CloudTrailWrite", "DenyInsecureTransport"}


def test_heartbeat_alarm_pages_when_the_heartbeat_goes_missing(stack):
    """Missing data is breaching, on exactly what tasks/heartbeat.py publishes, into the alerts topic."""
    topic = _value(stack.outputs, "alerts_topic_arn")
    [alarm] = stack.moto.client("cloudwatch").describe_alarms(
        AlarmNames=[_value(stack.outputs, "heartbeat_alarm_name")])["MetricAlarms"]
    assert alarm["TreatMissingData"] == "breaching"
    assert alarm["AlarmActions"] == [topic] and alarm["OKActions"] == [topic]
    assert (alarm["Namespace"], alarm["MetricName"]) == (f"GiteaDeploy/{NAME}", "Heartbeat")
    assert alarm["Dimensions"] == [{"Name": "Domain", "Value": DOMAIN}]
    assert (alarm["Statistic"], alarm["ComparisonOperator"], alarm["Threshold"]) == (
        "SampleCount", "LessThanThreshold", 1.0)
    assert (alarm["Period"], alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (60, 5, 5)
    # The instance carries what from_ec2_tags() needs to find the same metric.
    ec2 = stack.moto.client("ec2")
    instance = ec2.describe_instances(InstanceIds=[_value(stack.outputs, "instance_id")])["Reservations"][0]["Instances"][0]
    tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
    assert (tags["gitea-deploy:metrics-namespace"], tags["gitea-deploy:heartbeat-metric"]) == (
        alarm["Namespace"], alarm["MetricName"])


################################################################################
# cloud-init user data
################################################################################

@pytest.fixture(scope="module")
def cloud_config(stack):
    ec2 = stack.moto.client("ec2")
    attribute = ec2.describe_instance_attribute(InstanceId=_value(stack.outputs, "instance_id"), Attribute="userData")
    text = base64.b64decode(attribute["UserData"]["Value"]).decode()
    assert text.startswith("#cloud-config\n"), text[:200]
    return text, yaml.safe_load(text)


def test_user_data_moves_sshd_and_holds_no_secret(cloud_config):
    text, config = cloud_config
    files = {f["path"]: f for f in config["write_files"]}
    assert files["/etc/ssh/sshd_config.d/gitea-deploy.conf"]["content"] == f"Port {ADMIN_PORT}\n"
    assert config["runcmd"] == [["/usr/local/sbin/gitea-deploy-first-boot"]]
    assert config["ssh_pwauth"] is False
    secret_like = re.compile(r"(?i)((password|passwd|secret|token|api_?key)\w*\s*[:=]|BEGIN [A-Z ]*PRIVATE KEY|AKIA[0-9A-Z]{16})")
    hits = [line for line in text.splitlines() if secret_like.search(line)]
    assert not hits, hits


def test_first_boot_script_formats_only_an_empty_volume(cloud_config, tmp_path):
    """Run the rendered script against a file image, with systemctl/sshd/mount stubbed."""
    for tool in ("mkfs.ext4", "blkid", "bash"):
        if not shutil.which(tool) and not Path("/sbin", tool).exists():
            pytest.skip(f"{tool} is not installed (e2fsprogs/util-linux)")
    _, config = cloud_config
    script = tmp_path / "first-boot"
    script.write_text({f["path"]: f for f in config["write_files"]}["/usr/local/sbin/gitea-deploy-first-boot"]["content"])
    script.chmod(0o755)
    assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0

    stubs = tmp_path / "bin"
    stubs.mkdir()
    calls = tmp_path / "calls"
    for tool in ("systemctl", "sshd", "mount", "mountpoint"):
        stub = stubs / tool
        code = 1 if tool == "mountpoint" else 0
        # `systemctl is-enabled/is-active ssh.socket` -> no (Debian's default: ssh.service)
        stub.write_text(f'#!/bin/sh\necho "{tool} $*" >> "{calls}"\n'
                        f'case "$*" in *is-enabled*|*is-active*) exit 1;; esac\nexit {code}\n')
        stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    image = tmp_path / "data.img"
    with open(image, "wb") as f:
        f.truncate(64 * 1024 * 1024)
    fstab = tmp_path / "fstab"
    fstab.write_text("# fstab\n")
    env = {"PATH": f"{stubs}:/usr/sbin:/sbin:/usr/bin:/bin", "DATA_DEVICE": str(image), "FSTAB": str(fstab),
           "DATA_ROOT": str(tmp_path / "srv-gitea"), "DEVICE_WAIT_SECONDS": "5"}

    def run():
        proc = subprocess.run([str(script)], env=env, capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 0, proc.stderr
        return proc.stderr, subprocess.run(["blkid", "-s", "UUID", "-o", "value", str(image)],
                                           capture_output=True, text=True, check=True).stdout.strip()

    first_log, uuid = run()
    assert "creating ext4" in first_log and uuid
    second_log, uuid_again = run()
    assert "already has a filesystem: keeping it" in second_log
    assert uuid_again == uuid, "the second boot reformatted the data volume"
    lines = [line for line in fstab.read_text().splitlines() if line.startswith("UUID=")]
    assert lines == [f"UUID={uuid} {tmp_path / 'srv-gitea'} ext4 defaults,noatime,nofail,x-systemd.device-timeout=30s 0 2"]
    log = calls.read_text()
    assert "sshd -t" in log and "systemctl restart ssh.service" in log and f"mount {tmp_path / 'srv-gitea'}" in log


################################################################################
# the example tfvars (and what moto cannot apply)
################################################################################

def test_example_tfvars_plans(stack):
    """The production example (plus database = rds) plans against moto: DLM, budget and IPv6 included."""
    result = stack.jobs["example"].result()
    assert result.returncode == 2, "terraform/examples/production.tfvars does not plan:\n" + "\n".join(
        _errors(result.stdout) or [result.describe()])
    changes = _planned_changes(result.stdout)
    for address in ("aws_instance.gitea", "aws_dlm_lifecycle_policy.data[0]", "aws_iam_role.dlm[0]",
                    "aws_budgets_budget.monthly[0]", "aws_cloudtrail.this[0]", "aws_route53_zone.this[0]",
                    "aws_route53_record.a[0]", "aws_route53_record.aaaa[0]", "aws_route.public_ipv6[0]",
                    "aws_sns_topic_subscription.email[0]", "aws_db_instance.gitea[0]", "aws_db_subnet_group.this[0]"):
        assert changes.get(address) == "create", f"{address}: {changes.get(address)}"
    # smtp_egress_port = 587 in the example: that port, both families, and no other mail port.
    smtp = {a: c for a, c in changes.items() if a.startswith('aws_vpc_security_group_egress_rule.internet["smtp-')}
    assert smtp == {'aws_vpc_security_group_egress_rule.internet["smtp-587-ipv4"]': "create",
                    'aws_vpc_security_group_egress_rule.internet["smtp-587-ipv6"]': "create"}, smtp


################################################################################
# destroy (last in this module)
################################################################################

def test_destroy(stack):
    stack.root.run("destroy", "-auto-approve", "-input=false", "-no-color", f"-var-file={stack.var_file}", timeout=TIMEOUT)
    ec2 = stack.moto.client("ec2")
    running = ec2.describe_instances(Filters=[{"Name": "tag:gitea-deploy:name", "Values": [NAME]},
                                              {"Name": "instance-state-name", "Values": ["running", "pending"]}])
    assert not running["Reservations"]
    # The root's state versions are still in the bucket; emptying it is the operator's step too
    # (docs/runbooks/aws.md "Destroy").
    _empty_bucket(stack.moto, STATE_BUCKET)
    stack.bootstrap.run("destroy", "-auto-approve", "-input=false", "-no-color",
                        f"-var-file={stack.bootstrap_var_file}", timeout=TIMEOUT)
    stack.destroyed = True
    buckets = [b["Name"] for b in stack.moto.client("s3").list_buckets()["Buckets"]]
    assert STATE_BUCKET not in buckets

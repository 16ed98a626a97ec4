"""inventories/sources.py without Terraform: shapes, and the errors an operator sees.

(The real thing, against outputs of an applied module and moto's EC2, is in test_tf_apply_moto.py.)
"""

from __future__ import annotations

import copy

import pytest
from tf_support import FAKE_AWS_ENV, load_sources

pytestmark = pytest.mark.terraform

sources = load_sources()

HOST = {
    "name": "gitea",
    "ssh_hostname": "198.51.100.7",
    "ssh_port": 2222,
    "ssh_user": "admin",
    "admin_ssh_port": 2222,
    "gitea_domain": "git.example.org",
    "aws_region": "eu-central-1",
    "backup_s3_bucket": "gitea-backups-000000000000-eu-central-1",
    "backup_s3_prefix": "gitea",
    "ssm_parameter_path": "/gitea-deploy/gitea",
    "database_endpoint": None,
    "metrics_namespace": "GiteaDeploy/gitea",
    "heartbeat_metric": "Heartbeat",
    "alert_sns_topic_arn": "arn:aws:sns:eu-central-1:000000000000:gitea-alerts",
}
OUTPUTS = {"pyinfra_inventory": {"sensitive": False, "type": ["tuple", []], "value": [HOST]}}


def test_outputs_become_host_tuples():
    hosts = sources.from_terraform(outputs_json=copy.deepcopy(OUTPUTS))
    expected = {k: v for k, v in HOST.items() if k != "name"}
    assert hosts == [("gitea", expected)]
    assert set(hosts[0][1]) == set(sources.HOST_KEYS)


@pytest.mark.parametrize(("outputs", "message"), [
    ({}, "terraform output has no pyinfra_inventory: run `terraform -chdir=terraform apply` first"),
    ({"pyinfra_inventory": {"value": []}}, "pyinfra_inventory is empty"),
    ({"pyinfra_inventory": {"value": "198.51.100.7"}}, "must be a list of hosts"),
    ({"pyinfra_inventory": {"value": [{"name": "gitea", "ssh_hostname": "198.51.100.7"}]}}, "lacks ssh_port"),
    ({"pyinfra_inventory": {"value": [dict(HOST, ssh_port="ssh")]}}, "ssh_port is not a port number"),
    ({"pyinfra_inventory": {"value": [dict(HOST, ssh_hostname=None)]}}, "has no ssh_hostname yet"),
])
def test_unusable_outputs_say_what_to_do(outputs, message):
    with pytest.raises(LookupError, match=message.replace("(", r"\(").replace(")", r"\)").replace("`", ".")):
        sources.from_terraform(outputs_json=outputs)


def test_missing_terraform_binary_is_a_lookup_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(LookupError, match="terraform is not on PATH"):
        sources.from_terraform()


def test_missing_directory_is_a_lookup_error(terraform_bin, tmp_path):  # noqa: ARG001 (needs terraform)
    with pytest.raises(LookupError, match="does not exist"):
        sources.from_terraform(chdir=tmp_path / "nowhere")


def test_uninitialised_directory_is_a_lookup_error(terraform_bin, tmp_path):  # noqa: ARG001
    (tmp_path / "main.tf").write_text('terraform {\n  backend "s3" {}\n}\n')
    with pytest.raises(LookupError, match="init"):
        sources.from_terraform(chdir=tmp_path)


@pytest.fixture
def mocked_aws(monkeypatch):
    moto = pytest.importorskip("moto", reason="moto[server] is not installed (pyproject's test extra)")
    for key, value in FAKE_AWS_ENV.items():
        monkeypatch.setenv(key, value)
    with moto.mock_aws():
        yield


def _run_instance(tags: dict[str, str]) -> str:
    import boto3

    ec2 = boto3.client("ec2", region_name="eu-central-1")
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    instance = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, TagSpecifications=[
        {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}])["Instances"][0]
    return instance["InstanceId"]


def test_ec2_instance_without_the_deploy_tags_is_refused(mocked_aws):
    instance_id = _run_instance({"gitea-deploy:name": "gitea"})
    with pytest.raises(LookupError, match=f"instance {instance_id} .* lacks the tags gitea-deploy:domain"):
        sources.from_ec2_tags("gitea-deploy:name", "gitea", "eu-central-1")


def test_ec2_tags_become_host_data(mocked_aws):
    _run_instance({
        "gitea-deploy:name": "gitea",
        "gitea-deploy:domain": "git.example.org",
        "gitea-deploy:admin-port": "2200",
        "gitea-deploy:backup-bucket": "bucket",
        "gitea-deploy:backup-prefix": "gitea",
        "gitea-deploy:ssm-parameter-path": "/gitea-deploy/gitea",
        "gitea-deploy:metrics-namespace": "GiteaDeploy/gitea",
        "gitea-deploy:heartbeat-metric": "Heartbeat",
        "gitea-deploy:alerts-topic-arn": "arn:aws:sns:eu-central-1:123456789012:gitea-alerts",
    })
    [(name, data)] = sources.from_ec2_tags("gitea-deploy:name", "gitea", "eu-central-1")
    assert name == "gitea"
    assert data["ssh_port"] == data["admin_ssh_port"] == 2200
    assert data["ssh_user"] == "admin" and data["database_endpoint"] is None
    assert (data["metrics_namespace"], data["heartbeat_metric"]) == ("GiteaDeploy/gitea", "Heartbeat")
    assert data["alert_sns_topic_arn"] == "arn:aws:sns:eu-central-1:123456789012:gitea-alerts"
    assert set(data) == set(sources.HOST_KEYS)


def test_no_running_instance_is_a_lookup_error(mocked_aws):
    with pytest.raises(LookupError, match="no running instance tagged gitea-deploy:name=gitea in eu-central-1"):
        sources.from_ec2_tags("gitea-deploy:name", "gitea", "eu-central-1")

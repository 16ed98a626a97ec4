"""The heartbeat (tasks/heartbeat.py, files/heartbeat/): the configuration the deploy writes is the
one the job reads, the PutMetricData request it builds is the metric Terraform's alarm watches, it
is sent only while the monitoring answers, the switch and the settings, and the units. What needs
CloudWatch (moto) and systemd is in tests/lab/test_heartbeat.py and tests/host/test_heartbeat.py."""

from __future__ import annotations

import configparser
import dataclasses
import datetime
import io
import json
import os
import subprocess
import sys
import urllib.error

import pytest

from tasks import REPO, settings
from tasks import heartbeat as task
from tests.unit.load import load_file
from tests.unit.render import sample_data

job = load_file("files/heartbeat/gitea-heartbeat", "gitea_heartbeat")  # a program: no .py suffix

# Emulated AWS, as the lab has it, and production (Terraform's outputs, the instance role).
LAB = {"aws_region": "us-east-1", "s3_endpoint": "http://127.0.0.1:5050", "backup_s3_bucket": "lab-backups",
       "backup_aws_access_key_id": "test-key", "backup_aws_secret_access_key": "test-not-secret",
       "metrics_namespace": "GiteaDeploy/lab", "ssm_parameter_path": "/test"}
PROD = {"aws_region": "eu-central-1", "backup_s3_bucket": "acme-gitea-backups", "metrics_namespace": "GiteaDeploy/gitea",
        "heartbeat_metric": "Heartbeat", "ssm_parameter_path": "/gitea-deploy/gitea"}
NOW = datetime.datetime(2026, 12, 2, 14, 0, 5, tzinfo=datetime.UTC)


def parsed(data: dict, watch_prometheus: bool = False):
    """The job's Config from the heartbeat.json the deploy writes for this inventory data; without
    `watch_prometheus` as on a host without Prometheus, so no test asks this machine's port 9090."""
    config = job.Config.parse(task.render_config(sample_data(**data)))
    return config if watch_prometheus else dataclasses.replace(config, prometheus_url=None)


# --- the switch -------------------------------------------------------------------------------------

def test_only_a_host_with_a_namespace_in_a_region_has_a_heartbeat():
    assert task.enabled(sample_data(**PROD)) and task.enabled(sample_data(**LAB))
    assert not task.enabled(sample_data())  # no AWS at all: the defaults
    assert not task.enabled(sample_data(aws_region="eu-central-1"))  # AWS, but no namespace from Terraform
    assert task.packages(sample_data(**PROD)) == ["python3-boto3"]
    assert task.packages(sample_data()) == []


def test_a_namespace_without_a_region_is_refused():
    found = settings.problems(sample_data(metrics_namespace="GiteaDeploy/gitea"))
    assert any(line.startswith("aws_region: is required with metrics_namespace") for line in found), found
    assert settings.problems(sample_data(**PROD)) == []


@pytest.mark.parametrize(("key", "value"), [
    ("metrics_namespace", "AWS/EC2"),  # reserved by AWS
    ("metrics_namespace", "Gitea Deploy"),
    ("metrics_namespace", "GiteaDeploy/gitea\n"),
    ("metrics_namespace", ""),
    ("metrics_namespace", "x" * 256),
    ("heartbeat_metric", "Heart beat"),
    ("heartbeat_metric", "1Heartbeat"),
    ("heartbeat_metric", "Heartbeat\n"),
    ("heartbeat_metric", None),
])
def test_bad_heartbeat_settings_are_refused_naming_the_key(key, value):
    found = settings.problems(sample_data(**{**PROD, key: value}))
    assert any(line.startswith(f"{key}: ") for line in found), found


def test_every_terraform_host_key_is_a_setting():
    from inventories import sources

    assert {"metrics_namespace", "heartbeat_metric"} <= set(sources.HOST_KEYS)
    assert settings.unknown_keys(dict.fromkeys(sources.HOST_KEYS)) == []


# --- the configuration: what the deploy writes is what the job reads --------------------------------

def test_production_uses_the_instance_role_and_the_real_endpoint():
    cfg = parsed(PROD)
    assert (cfg.namespace, cfg.metric, cfg.dimensions) == ("GiteaDeploy/gitea", "Heartbeat",
                                                           {"Domain": "git.example.com"})
    assert cfg.endpoint_url is None and cfg.credentials_file is None
    assert job.aws_environment(cfg) == {"AWS_REGION": "eu-central-1", "AWS_DEFAULT_REGION": "eu-central-1"}


def test_the_emulated_aws_gets_its_endpoint_and_the_root_only_keys_file_never_the_keys():
    text = task.render_config(sample_data(**LAB))
    assert LAB["backup_aws_secret_access_key"] not in text and LAB["backup_aws_access_key_id"] not in text
    assert job.aws_environment(parsed(LAB)) == {
        "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": "http://127.0.0.1:5050",
        "AWS_SHARED_CREDENTIALS_FILE": "/etc/gitea-deploy/aws-credentials", "AWS_EC2_METADATA_DISABLED": "true"}


def test_prometheus_is_watched_only_where_the_deploy_installs_it(monkeypatch):
    # The monitoring stage installs Prometheus: the heartbeat means "the host and its monitoring answer".
    assert parsed({**PROD, "prometheus_port": 9091}, watch_prometheus=True).prometheus_url \
        == "http://127.0.0.1:9091/-/healthy"
    import tasks.packages

    monkeypatch.setattr(tasks.packages, "wanted", lambda data: ["python3-boto3"])
    assert parsed(PROD, watch_prometheus=True).prometheus_url is None  # without Prometheus the heartbeat is the host's alone


def test_the_configuration_is_json_from_a_serializer_and_stable():
    text = task.render_config(sample_data(**PROD))
    assert json.loads(text) == task.config(sample_data(**PROD))
    assert text == task.render_config(sample_data(**PROD)) and text.endswith("}\n")


@pytest.mark.parametrize(("change", "message"), [
    (lambda c: c.pop("metric"), "missing ['metric']"),
    (lambda c: c.update(extra=1), "unknown ['extra']"),
    (lambda c: c.update(namespace=""), "namespace must be a non-empty string"),
    (lambda c: c.update(endpoint_url=5), "endpoint_url must be null"),
    (lambda c: c.update(dimensions={}), "dimensions must map"),
    (lambda c: c.update(timeout_seconds=True), "timeout_seconds"),
    (lambda c: c.update(timeout_seconds=120), "timeout_seconds"),
])
def test_an_unusable_configuration_names_what_is_wrong(change, message):
    raw = task.config(sample_data(**PROD))
    change(raw)
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        job.Config.parse(json.dumps(raw))


# --- the request ----------------------------------------------------------------------------------

def test_the_request_is_one_datapoint_of_the_metric_the_alarm_watches():
    request = job.metric_data(parsed(PROD), NOW)
    assert request == {"Namespace": "GiteaDeploy/gitea", "MetricData": [{
        "MetricName": "Heartbeat", "Dimensions": [{"Name": "Domain", "Value": "git.example.com"}],
        "Timestamp": NOW, "Value": 1.0, "Unit": "Count"}]}
    # terraform/alerts.tf watches the same dimension name; its value is the same gitea_domain.
    assert task.DIMENSION in (REPO / "terraform/iam.tf").read_text()


def test_dimensions_are_sent_in_one_order_and_the_time_in_utc():
    cfg = job.Config(**{**parsed(PROD).__dict__, "dimensions": {"b": "2", "a": "1"}})
    local = NOW.astimezone(datetime.timezone(datetime.timedelta(hours=2)))
    [datum] = job.metric_data(cfg, local)["MetricData"]
    assert [d["Name"] for d in datum["Dimensions"]] == ["a", "b"]
    assert datum["Timestamp"] == NOW and datum["Timestamp"].utcoffset() == datetime.timedelta(0)
    with pytest.raises(ValueError, match="timezone-aware"):
        job.metric_data(cfg, NOW.replace(tzinfo=None))


# --- sent only while the monitoring answers -----------------------------------------------------------

class Response:
    def __init__(self, status):
        self.status = status

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def opener_of(outcome):
    asked = []

    def opener(url, timeout):
        asked.append((url, timeout))
        if isinstance(outcome, Exception):
            raise outcome
        return Response(outcome)

    opener.asked = asked
    return opener


class FakeCloudWatch:
    def __init__(self, error: Exception | None = None):
        self.requests, self.error = [], error

    def put_metric_data(self, **request):
        if self.error:
            raise self.error
        self.requests.append(request)



@pytest.fixture
def watched(monkeypatch):
    import tasks.packages

    monkeypatch.setattr(tasks.packages, "wanted", lambda data: ["prometheus"])
    return parsed(PROD, watch_prometheus=True)


def test_a_healthy_host_sends_one_datapoint(watched):
    cloudwatch, opener = FakeCloudWatch(), opener_of(200)
    code, message = job.beat(watched, client_factory=lambda cfg: cloudwatch, opener=opener, now=NOW)
    assert code == job.EXIT_SENT and "heartbeat sent" in message
    assert cloudwatch.requests == [job.metric_data(watched, NOW)]
    assert opener.asked == [("http://127.0.0.1:9090/-/healthy", 10.0)]


@pytest.mark.parametrize(("outcome", "why"), [
    (503, "answered HTTP 503"),
    (urllib.error.HTTPError("u", 500, "down", {}, io.BytesIO()), "answered HTTP 500"),
    (urllib.error.URLError(ConnectionRefusedError(111, "Connection refused")), "does not answer"),
    (TimeoutError("timed out"), "does not answer"),
])
def test_no_datapoint_while_prometheus_is_unhealthy(watched, outcome, why):
    built = []
    code, message = job.beat(watched, client_factory=lambda cfg: built.append(cfg), opener=opener_of(outcome), now=NOW)
    assert code == job.EXIT_NOT_SENT and why in message
    assert built == [], "CloudWatch was called although the monitoring is down"


def test_without_prometheus_the_heartbeat_asks_nothing_but_cloudwatch():
    cloudwatch, opener = FakeCloudWatch(), opener_of(RuntimeError("must not be asked"))
    assert job.beat(parsed(PROD), client_factory=lambda cfg: cloudwatch, opener=opener, now=NOW)[0] == job.EXIT_SENT
    assert opener.asked == [] and len(cloudwatch.requests) == 1


def test_a_refused_request_is_a_failed_run_with_the_reason():
    denied = FakeCloudWatch(RuntimeError("AccessDenied: not authorized to perform cloudwatch:PutMetricData"))
    code, message = job.beat(parsed(PROD), client_factory=lambda cfg: denied, now=NOW)
    assert code == job.EXIT_NOT_SENT and "PutMetricData failed: RuntimeError: AccessDenied" in message


# --- the program ----------------------------------------------------------------------------------------

def run_program(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "files/heartbeat/gitea-heartbeat"), *args],
                          capture_output=True, text=True, timeout=30, check=False,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})


def test_dry_run_prints_the_request_and_sends_nothing(tmp_path):
    path = tmp_path / "heartbeat.json"
    config = json.loads(task.render_config(sample_data(**LAB)))
    path.write_text(json.dumps({**config, "prometheus_url": None}))  # this machine's 9090 is not asked
    cp = run_program("--config", str(path), "--dry-run")
    assert cp.returncode == 0, cp.stderr
    shown = json.loads(cp.stdout)
    assert shown["monitoring"] == "ok" and shown["environment"]["AWS_ENDPOINT_URL"] == "http://127.0.0.1:5050"
    assert shown["request"]["Namespace"] == "GiteaDeploy/lab"


def test_an_unreadable_configuration_exits_2_with_an_error_priority_line(tmp_path):
    cp = run_program("--config", str(tmp_path / "missing.json"))
    assert cp.returncode == job.EXIT_CONFIG
    assert cp.stderr.startswith("<3>gitea-heartbeat: ")  # journald stores it at priority err


# --- the units ---------------------------------------------------------------------------------------------

def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # systemd's keys are case-sensitive
    parser.read_string((REPO / "files/heartbeat" / name).read_text())
    return parser


def test_the_timer_fires_every_minute_and_starts_at_boot():
    timer = unit(task.TIMER)
    assert timer["Timer"]["OnUnitActiveSec"] == "60s" and timer["Timer"]["AccuracySec"] == "1s"
    assert timer["Install"]["WantedBy"] == "timers.target"


def test_the_service_runs_the_installed_program_bounded_and_without_privileges():
    service = unit(task.SERVICE)["Service"]
    assert service["ExecStart"] == task.PROGRAM and service["Type"] == "oneshot"
    assert service["TimeoutStartSec"] == "50s"  # inside the timer's minute
    assert service["CapabilityBoundingSet"] == "" and service["ProtectSystem"] == "strict"
    assert service["LogLevelMax"] == "notice"
    # The configuration and the keys are files (heartbeat.json, the root-only keys file), never the unit.
    assert not any(key.startswith(("Environment", "LoadCredential", "SetCredential")) for key in service)

"""The heartbeat end to end (issue 11): a lab host deployed with its own emulated AWS publishes one
CloudWatch datapoint a minute, read back from that moto by boto3 from here; stopping the timer
stops them (which is what the Terraform alarm, missing data = breaching, turns into a page), and
the next deploy starts it again; and the job sends nothing while the Prometheus it watches does
not answer. Steps share the host and run in file order; the figures are printed.
"""

from __future__ import annotations

import datetime
import itertools
import json
import os
import shlex
import time

import pytest

from lab import api
from lab.converge import deploy

pytestmark = pytest.mark.lab

HOST = os.environ.get("GITEA_LAB_HEARTBEAT_HOST") or "gitea-lab-hb"
AWS = "hb"  # its own shared emulated AWS (container gitea-lab-aws-hb), reachable from here on the lab network
NAMESPACE = f"GiteaDeploy/{HOST}"  # what inventories/lab.py gives, as Terraform's GiteaDeploy/<name>
METRIC, DIMENSIONS = "Heartbeat", [{"Name": "Domain", "Value": "git.lab.test"}]
PROBE_METRIC = "HeartbeatProbe"  # the guard test's own metric: the timer's beats never count there
HEALTH_PORT = 19099  # a stand-in for Prometheus's /-/healthy (the monitoring stage is not in this deploy)
INTERVAL = 60
FIGURES: dict[str, float] = {}


@pytest.fixture(scope="module")
def host(lab_engine):
    api.down([HOST])  # a stale host of an interrupted run
    api.aws_down(AWS)
    api.up([HOST], aws=AWS)
    result = deploy(HOST)
    if result["returncode"] != 0:
        api.down([HOST])
        api.aws_down(AWS)
        pytest.fail(f"{HOST}: the deploy failed\n{result['log'][-4000:]}")
    FIGURES["first deploy (s)"] = result["seconds"]
    yield HOST
    print("\nheartbeat figures: " + ", ".join(f"{k} {v:.1f}" for k, v in FIGURES.items()))
    api.down([HOST])
    api.aws_down(AWS)


@pytest.fixture(scope="module")
def cloudwatch(host):
    """boto3 against the host's moto, as the host sees it, from this process."""
    import boto3
    import botocore.session

    from lab import hosts

    address = hosts.ensure_shared_aws(AWS)  # the running server's address on the lab network
    core = botocore.session.Session()
    # Debian 13's moto (the lab's) answers CloudWatch's query protocol only; botocore 1.38+ would pick
    # smithy-rpc-v2-cbor. The loader caches the model it hands the client: pin that one to query.
    model = core.get_component("data_loader").load_service_model("cloudwatch", "service-2")
    model["metadata"].update(protocol="query", protocols=["query"])
    session = boto3.session.Session(botocore_session=core, region_name="us-east-1",
                                    aws_access_key_id="lab", aws_secret_access_key="lab")
    client = session.client("cloudwatch", endpoint_url=f"http://{address}:5050")
    assert client.meta.service_model.resolved_protocol == "query"
    return client


def beats(cloudwatch, since: float, metric: str = METRIC) -> list[float]:
    """Times (epoch seconds) of the datapoints since `since`, to the second."""
    start = datetime.datetime.fromtimestamp(int(since), datetime.UTC)
    end = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=2)
    found = cloudwatch.get_metric_statistics(Namespace=NAMESPACE, MetricName=metric, Dimensions=DIMENSIONS,
                                             StartTime=start, EndTime=end, Period=1, Statistics=["SampleCount"])
    return sorted(d["Timestamp"].timestamp() for d in found["Datapoints"] if d["SampleCount"] > 0)


def wait_for_beats(cloudwatch, since: float, count: int, timeout: float, metric: str = METRIC) -> list[float]:
    deadline = time.monotonic() + timeout
    while len(seen := beats(cloudwatch, since, metric)) < count and time.monotonic() < deadline:
        time.sleep(3)
    assert len(seen) >= count, f"{len(seen)} datapoints of {metric} in {timeout:.0f} s, wanted {count}: {seen}"
    return seen


def sh(script: str, check: bool = True):
    cp = api.exec(HOST, ["bash", "-c", "set -euo pipefail\n" + script], timeout=120)
    if check and cp.returncode != 0:
        raise AssertionError(f"exit {cp.returncode}\n{cp.stdout[-2000:]}\n{cp.stderr[-2000:]}")
    return cp


def test_datapoints_arrive_every_minute(host, cloudwatch):
    since = time.time() - 15 * 60  # the deploy started the timer minutes ago, at most
    seen = wait_for_beats(cloudwatch, since, count=2, timeout=2 * INTERVAL + 30)
    listed = cloudwatch.list_metrics(Namespace=NAMESPACE)["Metrics"]
    assert {"Namespace": NAMESPACE, "MetricName": METRIC, "Dimensions": DIMENSIONS} in listed, listed
    gaps = [b - a for a, b in itertools.pairwise(seen)]
    # Each datapoint's time is taken after python3 and boto3 have started, which on a loaded machine
    # takes from one second to several: the gaps vary by that much around the timer's minute.
    assert all(INTERVAL - 15 <= gap <= INTERVAL + 15 for gap in gaps), f"gaps between beats: {gaps}"
    FIGURES["seconds between beats"] = sum(gaps) / len(gaps)
    FIGURES["age of the last beat when read (s)"] = time.time() - seen[-1]


def test_stopping_the_timer_stops_the_datapoints_and_the_deploy_starts_it_again(host, cloudwatch):
    # A run in progress ends first: its datapoint carries a time from before `stopped`.
    sh("systemctl stop gitea-heartbeat.timer\n"
       "for i in $(seq 60); do systemctl is-active -q gitea-heartbeat.service || break; sleep 1; done")
    stopped = time.time()
    time.sleep(INTERVAL + 20)  # more than one beat's interval and its accuracy
    assert beats(cloudwatch, stopped) == [], "datapoints kept arriving after the timer was stopped"
    assert sh("systemctl is-active gitea-heartbeat.timer", check=False).stdout.strip() == "inactive"

    redeployed = time.time()
    result = deploy(HOST)
    assert result["returncode"] == 0, result["log"][-4000:]
    changed = [op["name"] for op in result["operations"] if op["success"]]
    assert changed == ["Heartbeat | Heartbeat timer running"], changed
    seen = wait_for_beats(cloudwatch, redeployed, count=1, timeout=result["seconds"] + 40)
    FIGURES["redeploy to the first beat (s)"] = seen[0] - redeployed


HEALTH_SERVER = """
import http.server, sys
status = int(sys.argv[1])
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(status if self.path == "/-/healthy" else 404)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[2])), Health).serve_forever()
"""


def probe_run(status: int | None) -> tuple[int, str, float]:
    """gitea-heartbeat once with the deployed configuration, its metric PROBE_METRIC and a Prometheus
    on HEALTH_PORT answering `status` (None: nothing listens): (exit code, stderr, when)."""
    config = json.loads(sh("cat /etc/gitea-deploy/heartbeat.json").stdout)
    config.update(metric=PROBE_METRIC, prometheus_url=f"http://127.0.0.1:{HEALTH_PORT}/-/healthy")
    server = "" if status is None else (
        f"python3 -c {shlex.quote(HEALTH_SERVER)} {status} {HEALTH_PORT} & server=$!\n"
        f"trap 'kill $server' EXIT\n"
        f"for i in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/{HEALTH_PORT}) 2>/dev/null && break; sleep 0.1; done\n")
    when = time.time()
    cp = sh(f"printf '%s' {shlex.quote(json.dumps(config))} > /tmp/heartbeat-probe.json\n{server}"
            "set +e; gitea-heartbeat --config /tmp/heartbeat-probe.json; echo \"rc=$?\"", check=False)
    return int(cp.stdout.strip().rsplit("rc=", 1)[-1]), cp.stderr, when


def test_no_datapoint_while_prometheus_does_not_answer(host, cloudwatch):
    code, stderr, when = probe_run(None)
    assert code == 1 and "Prometheus does not answer" in stderr, stderr
    code, stderr, _ = probe_run(503)
    assert code == 1 and "answered HTTP 503" in stderr, stderr
    time.sleep(2)
    assert beats(cloudwatch, when, PROBE_METRIC) == [], "a datapoint was sent while Prometheus was unhealthy"
    code, stderr, healthy = probe_run(200)
    assert code == 0, stderr
    assert wait_for_beats(cloudwatch, healthy, count=1, timeout=20, metric=PROBE_METRIC)

"""What the alerting lab tests share: a webhook receiver the test runs where the lab host reaches it,
an SNS topic with an SQS queue subscribed in the host's emulated AWS, and the deploy's --data.

Where the receiver runs: a container in the lab host's network namespace (`--network container:H`,
as the lab's sidecars do), listening on the host's 127.0.0.1. So Alertmanager posts to a loopback
URL, the only kind of plain-http receiver the settings admit (tasks/settings/checks.py alert_url),
and nothing leaves the lab host. The container runs the stdlib server below with the lab mail
image's python3, prints each request as one JSON line, and the test reads `docker logs`.
"""

from __future__ import annotations

import json
import subprocess
import time

from lab import api, images
from lab.config import LABEL_HOST, LABEL_ROLE
from lab.engine import docker, remove_containers

HOOK_PORT = 9999
TOPIC = "gitea-lab-alerts"
QUEUE = "gitea-lab-alerts-inbox"
MOTO = "http://127.0.0.1:5050"   # the host's moto sidecar (lab/config.py MOTO_PORT)
REGION = "us-east-1"             # inventories/lab.py aws_region
ACCOUNT = "123456789012"         # moto's account
TOPIC_ARN = f"arn:aws:sns:{REGION}:{ACCOUNT}:{TOPIC}"
ALERT_MAIL = "oncall@lab.test"

RECEIVER = r'''
import json, sys, time
from http.server import BaseHTTPRequestHandler, HTTPServer

class Hook(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        print(json.dumps({"path": self.path, "at": time.time(), "body": json.loads(body or b"null")}),
              flush=True)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass

address, port = sys.argv[1].rsplit(":", 1)
print("listening", flush=True)
HTTPServer((address, int(port)), Hook).serve_forever()
'''


def receiver_name(host: str) -> str:
    return f"{host}-webhook"


def start_receiver(host: str) -> None:
    """(Re)start the host's webhook receiver on its 127.0.0.1:HOOK_PORT; wait until it listens."""
    name = receiver_name(host)
    remove_containers(name)
    docker("run", "-d", "--name", name, "--init", "--label", f"{LABEL_ROLE}=test", "--label", f"{LABEL_HOST}={host}",
           "--network", f"container:{host}", images.ensure("mail"),
           "python3", "-u", "-c", RECEIVER, f"127.0.0.1:{HOOK_PORT}")
    for _ in range(60):
        if "listening" in subprocess.run(["docker", "logs", name], capture_output=True, text=True).stdout:
            return
        time.sleep(0.5)
    raise AssertionError(f"{name} did not start: {subprocess.run(['docker', 'logs', name], capture_output=True, text=True)}")


def stop_receiver(host: str) -> None:
    remove_containers(receiver_name(host))


def received(host: str, path: str) -> list[dict]:
    """Every notification posted to `path`, oldest first: {"path", "at" (epoch s), "body"}."""
    out = subprocess.run(["docker", "logs", receiver_name(host)], capture_output=True, text=True).stdout
    return [m for line in out.splitlines() if line.startswith("{") and (m := json.loads(line))["path"] == path]


def wait_for(what: str, probe, timeout: float, interval: float = 1.0):
    """probe()'s first truthy value within `timeout` seconds; AssertionError naming `what` if none."""
    deadline = time.monotonic() + timeout
    while True:
        if value := probe():
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout:.0f} s")
        time.sleep(interval)


def aws(host: str, script: str) -> str:
    """Run boto3 `script` against the host's emulated AWS, inside its moto sidecar (which has boto3)."""
    prelude = (f"import boto3, json\nkw = dict(endpoint_url={MOTO!r}, region_name={REGION!r}, "
               "aws_access_key_id='lab', aws_secret_access_key='lab')\n"
               "sns = boto3.client('sns', **kw); sqs = boto3.client('sqs', **kw)\n")
    cp = subprocess.run(["docker", "exec", f"{host}-moto", "python3", "-c", prelude + script],
                        capture_output=True, text=True, timeout=120)
    assert cp.returncode == 0, cp.stderr[-2000:]
    return cp.stdout


def subscribe_queue(host: str) -> None:
    """The alerts topic in moto, with an SQS queue subscribed to it (raw: the queue holds what
    Alertmanager published)."""
    aws(host, f"""
arn = sns.create_topic(Name={TOPIC!r})["TopicArn"]
assert arn == {TOPIC_ARN!r}, arn
url = sqs.create_queue(QueueName={QUEUE!r})["QueueUrl"]
queue = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=queue, Attributes={{"RawMessageDelivery": "true"}})
sqs.purge_queue(QueueUrl=url)
""")


def queued(host: str) -> list[dict]:
    """Messages in the subscribed queue (received and deleted): {"body", "subject"}."""
    return json.loads(aws(host, f"""
url = sqs.get_queue_url(QueueName={QUEUE!r})["QueueUrl"]
got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                          MessageAttributeNames=["All"]).get("Messages", [])
for m in got:
    sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
print(json.dumps([{{"body": m["Body"]}} for m in got]))
"""))


def receivers_data() -> list[str]:
    """--data for the deploy: every receiver kind pointed at what the test reads."""
    values = {
        "alert_webhook_urls": [f"http://127.0.0.1:{HOOK_PORT}/hook"],
        "deadmans_switch_url": f"http://127.0.0.1:{HOOK_PORT}/deadman",
        "alert_sns_topic_arn": TOPIC_ARN,  # at moto: the lab's alert_sns_api_url (lab/environment.py)
        "alert_email_to": [ALERT_MAIL],
    }
    return [arg for key, value in values.items()
            for arg in ("--data", f"{key}={json.dumps(value) if isinstance(value, list) else value}")]


def post_alert(host: str, *labels: str, summary: str = "lab test") -> None:
    """Post one firing alert to the host's Alertmanager through its API (amtool on the host)."""
    cp = api.exec(host, ["amtool", "alert", "add", *labels, f"--annotation=summary={summary}"])
    assert cp.returncode == 0, cp.stdout + cp.stderr


def firing_names(notification: dict) -> list[str]:
    return sorted(a["labels"]["alertname"] for a in notification["body"]["alerts"] if a["status"] == "firing")

"""The shipped systemd units (schedule/systemd/) as tests read them: parsed, and as a control
machine would have them with the checkout somewhere other than /opt/gitea-deploy; and a webhook
receiver on 127.0.0.1 for the notification tests."""

from __future__ import annotations

import configparser
import http.server
import json
import shlex
import threading
from pathlib import Path

from tasks import REPO

UNITS = REPO / "schedule" / "systemd"
SERVICE = "gitea-deploy-redeploy.service"
TIMER = "gitea-deploy-redeploy.timer"
NOTIFY = "gitea-deploy-notify@.service"
CHECKOUT = "/opt/gitea-deploy"  # where the units expect the checkout (docs/runbooks/schedule.md)


def text(name: str, checkout: str | Path = CHECKOUT) -> str:
    """The unit file, with the checkout at `checkout` (the one path an installation may move)."""
    return (UNITS / name).read_text().replace(CHECKOUT, str(checkout))


def parse(name: str) -> dict[str, dict[str, str]]:
    """{section: {key: value}}; keys keep their case, `%` specifiers stay as written."""
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str
    parser.read_string(text(name))
    return {s: dict(parser[s]) for s in parser.sections()}


def exec_start(name: str, checkout: str | Path = CHECKOUT, instance: str = "") -> list[str]:
    """The unit's ExecStart argv as systemd would run it (`%i` is the instance)."""
    line = parse(name)["Service"]["ExecStart"].replace("%i", instance)
    return [a.replace(CHECKOUT, str(checkout)) for a in shlex.split(line)]


class Listener:
    """A webhook receiver on 127.0.0.1: records each POST's JSON body."""

    def __init__(self, status: int = 204):
        received = self.received = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append({"path": self.path, "type": self.headers["Content-Type"],
                                 "body": json.loads(body)})
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

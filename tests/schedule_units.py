"""The shipped systemd units (schedule/systemd/) as tests read them: parsed, and as a control
machine would have them with the checkout somewhere other than /opt/gitea-deploy."""

from __future__ import annotations

import configparser
import shlex
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

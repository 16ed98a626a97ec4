"""The lab's mail server: a real SMTP server (lab/images/mail, Debian's python3-aiosmtpd) on the lab
network, shared by every lab host, that stores each message instead of delivering it.

What an SMTP relay (SES, a provider) is to production: another machine the deploy's Gitea reaches
at an address. The lab inventory points `[mailer]` at it (lab/environment.py); tests read what
arrived:

    from lab import mail
    mail.ensure()                     # {"container", "host": "172.18.0.5", "port": 25}
    mail.messages()                   # [{"envelope_from", "envelope_to", "from", "to", "subject", ...}]
    mail.clear()
"""

from __future__ import annotations

import json

from lab import LabError, images
from lab.config import LABEL_ROLE, MAIL_CONTAINER, MAIL_PORT, NETWORK, SIDECAR_TIMEOUT
from lab.engine import container, docker, logs, remove_containers, running
from lab.util import GiveUp, locked, say, wait_until


def _address(info: dict) -> dict:
    ip = info["NetworkSettings"]["Networks"][NETWORK]["IPAddress"]
    return {"container": MAIL_CONTAINER, "host": ip, "port": MAIL_PORT}


def ensure() -> dict:
    """Start (or reuse) the lab's mail server; return where it listens on the lab network.
    Reused while it runs the current image, so its address and its stored mail stay."""
    image = images.ensure("mail")
    with locked("mail"):
        info = container(MAIL_CONTAINER)
        if running(info) and info["Config"]["Image"] == image:
            return _address(info)
        remove_containers(MAIL_CONTAINER)
        docker("run", "-d", "--name", MAIL_CONTAINER, "--init", "--label", f"{LABEL_ROLE}=mail",
               "--network", NETWORK, "-e", f"LAB_SMTP_PORT={MAIL_PORT}", image)

        def answers():
            if not running(container(MAIL_CONTAINER)):
                raise GiveUp(f"{MAIL_CONTAINER} exited\n{logs(MAIL_CONTAINER)}")
            cp = docker("exec", MAIL_CONTAINER, "python3", "-c",
                        f"import smtplib; s = smtplib.SMTP('127.0.0.1', {MAIL_PORT}, timeout=5); s.noop(); s.quit()",
                        check=False, timeout=30)
            if cp.returncode != 0:
                raise LabError(f"SMTP not answering yet: {cp.stderr.strip()[-300:]}")
            return True

        wait_until(f"{MAIL_CONTAINER} to answer SMTP", answers, timeout=SIDECAR_TIMEOUT, interval=0.5,
                   on_fail=lambda: logs(MAIL_CONTAINER))
        where = _address(container(MAIL_CONTAINER))
        say(f"mail server {MAIL_CONTAINER}: smtp://{where['host']}:{where['port']} (stores, never delivers)")
        return where


def where() -> dict:
    """The running mail server's address (what `up` started); LabError if it is not running."""
    info = container(MAIL_CONTAINER)
    if not running(info):
        raise LabError(f"the lab's mail server {MAIL_CONTAINER} is not running (run `python -m lab up NAME`)")
    return _address(info)


def messages() -> list[dict]:
    """Every message the server stored, oldest first (see lab/images/mail/lab-mail)."""
    cp = docker("exec", MAIL_CONTAINER, "lab-mail", "list", check=False, timeout=60)
    if cp.returncode != 0:
        raise LabError(f"{MAIL_CONTAINER}: lab-mail list failed: {cp.stderr.strip()[-300:]}")
    return json.loads(cp.stdout)


def clear() -> None:
    docker("exec", MAIL_CONTAINER, "lab-mail", "clear", timeout=60)


def down() -> None:
    remove_containers(MAIL_CONTAINER)

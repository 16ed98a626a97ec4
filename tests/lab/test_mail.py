"""Mail the deployed Gitea sends is delivered: `gitea admin sendmail` inside a converged lab host
reaches the lab's SMTP server (lab/mail.py, a real aiosmtpd on the lab network that the lab
inventory's mailer_host/mailer_port/mailer_protocol point at), and the message stored there has the
deploy's sender (mailer_from), the admin's address as recipient and the subject that was sent.
"""

from __future__ import annotations

import time
import uuid

import pytest

from lab import api, mail

pytestmark = pytest.mark.lab

COMPOSE = "docker compose -f /srv/gitea/compose.yaml"
ADMIN_EMAIL = "gitadmin@lab.test"       # lab/environment.py OPERATOR gitea_admin_email
MAILER_FROM = "gitea@git.lab.test"      # mailer_from's default: gitea@<gitea_domain> (inventories/lab.py)


def wait_for_mail(subject: str, timeout: float = 60) -> list[dict]:
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / 0.5) + 1):
        got = [m for m in mail.messages() if m["subject"] == subject]
        if got or time.monotonic() > deadline:
            return got
        time.sleep(0.5)
    return []


def test_sendmail_from_the_host_is_delivered(converged_host):
    name = converged_host["name"]
    subject = f"Lab mail {uuid.uuid4().hex[:8]}"
    cp = api.exec(name, f"{COMPOSE} exec -T gitea gitea admin sendmail --title '{subject}' "
                        f"--content 'Delivered through the lab SMTP server.' --force")
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert cp.stdout.strip() == "Sent 1 email(s) to all users"  # the admin is the only user
    got = wait_for_mail(subject)
    assert len(got) == 1, f"no message {subject!r} at the SMTP server; it has: {[m['subject'] for m in mail.messages()]}"
    m = got[0]
    assert m["envelope_from"] == MAILER_FROM
    assert MAILER_FROM in m["from"]
    assert m["envelope_to"] == [ADMIN_EMAIL] and m["to"] == ADMIN_EMAIL
    assert "Delivered through the lab SMTP server." in m["body"]
    # it came from the host (its Gitea container behind the host's NAT), not from somewhere else
    assert m["peer"] == converged_host["ip"]

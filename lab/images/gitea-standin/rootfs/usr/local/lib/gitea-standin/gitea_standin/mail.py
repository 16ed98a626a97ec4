"""Mail, the way Gitea sends it (the SMTP part).

- `gitea admin sendmail` does not send anything itself (cmd/mailer.go): it asks the RUNNING web
  process through the private API, POST {LOCAL_ROOT_URL}api/internal/mail/send with
  `X-Gitea-Internal-Auth: Bearer <INTERNAL_TOKEN>` and {"Subject", "Message", "To"}
  (modules/private/mail.go). No web process, no mail.
- The web process answers 500 {"err": "Mail service is not enabled."} without [mailer] ENABLED,
  else queues one message per active user with an e-mail (To empty = all users) and answers the
  count as plain text (routers/private/mail.go); a background sender delivers them.
- Delivery follows services/mailer/sender/smtp.go: TCP to SMTP_ADDR:SMTP_PORT; `smtps` wraps TLS
  at once, `smtp+starttls` upgrades when the server offers STARTTLS (else a warning and plain
  SMTP); TLS verifies the server for SMTP_ADDR unless FORCE_TRUST_SERVER_CERT; EHLO with
  HELO_HOSTNAME or the host name (ENABLE_HELO); with USER set the server must offer AUTH
  ("SMTP server does not support AUTH, but credentials provided"), CRAM-MD5 before PLAIN before
  LOGIN. Credentials over plain `smtp` ARE sent: go-mail's PlainAuth only allows that to
  "localhost", and Gitea names every TCP server "localhost" (smtp.NewClient(conn, "localhost")),
  so the only guard is the start-up warning for plain SMTP to a non-loopback address.
"""

import email.message
import email.utils
import hmac
import json
import queue
import smtplib
import socket
import ssl
import threading
import urllib.error
import urllib.request

from . import log

SEND_PATH = "/api/internal/mail/send"


class MailError(Exception):
    pass


# ---------------------------------------------------------------- the CLI side


def request_send(settings, subject, body, to=None):
    """What modules/private/mail.go SendEmail does; returns the count the server answered."""
    from .store import StoreError

    if not settings.internal_token:
        log.fatal(f"The INTERNAL_TOKEN setting is missing from the configuration file: {settings.path!r}.", "private")
    url = settings.local_root_url.rstrip("/") + SEND_PATH
    data = json.dumps({"Subject": subject, "Message": body, "To": to}).encode()
    req = urllib.request.Request(url, data=data, method="POST", headers={
        "Content-Type": "application/json", "X-Real-IP": "127.0.0.1",
        "X-Gitea-Internal-Auth": f"Bearer {settings.internal_token}"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.read().decode().strip()
    except urllib.error.HTTPError as e:
        try:
            err = json.loads(e.read() or b"{}").get("err") or f"{e.code} {e.reason}"
        except ValueError:
            err = f"{e.code} {e.reason}"
        raise StoreError(err) from None
    except (urllib.error.URLError, OSError) as e:
        print("Internal Server Connection Error")
        reason = getattr(e, "reason", e)
        raise StoreError(f'unable to contact gitea "POST {url}": {reason}') from None


# ---------------------------------------------------------------- the web side


def authorised(settings, header):
    """routers/private/internal.go authInternal: `Bearer <INTERNAL_TOKEN>`, compared in constant time."""
    want = f"Bearer {settings.internal_token}".encode()
    return bool(settings.internal_token) and hmac.compare_digest((header or "").encode(), want)


def build(mailer, to, subject, body):
    """services/mailer/sender/message.go: From from [mailer] FROM, SUBJECT_PREFIX + subject, a plain
    text body with an HTML alternative unless SEND_AS_PLAIN_TEXT."""
    msg = email.message.EmailMessage()
    msg["From"] = email.utils.formataddr((mailer.from_name, mailer.from_email)) if mailer.from_name \
        else mailer.from_email
    msg["To"] = to
    msg["Subject"] = mailer.subject_prefix + subject
    msg["Date"] = email.utils.formatdate(localtime=False)
    domain = mailer.from_email.rpartition("@")[2] or "localhost"
    msg["Message-ID"] = email.utils.make_msgid(domain=domain)
    msg["X-Mailer"] = "Gitea stand-in (lab only)"
    msg.set_content(body or "")
    if not mailer.send_as_plain_text:
        msg.add_alternative(body or "", subtype="html")
    return msg


def deliver(mailer, msg, timeout=30):
    """One message through SMTP as Gitea's SMTPSender does (see the module docstring)."""
    if mailer.protocol == "dummy":
        log.info(f"Mail From: {msg['From']} To: {msg['To']} Subject: {msg['Subject']} (dummy sender)", "mailer")
        return
    if mailer.protocol in ("smtp+unix", "sendmail"):
        raise MailError(f"[mailer] PROTOCOL = {mailer.protocol} is not implemented by the Gitea stand-in")
    context = None
    if mailer.protocol in ("smtps", "smtp+starttls"):
        context = ssl.create_default_context()
        if mailer.force_trust_server_cert:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
    helo = (mailer.helo_hostname or socket.gethostname()) if mailer.enable_helo else "localhost"
    port = int(mailer.smtp_port or 25)
    try:
        if mailer.protocol == "smtps":
            client = smtplib.SMTP_SSL(mailer.smtp_addr, port, local_hostname=helo, timeout=timeout,
                                      context=context)
        else:
            client = smtplib.SMTP(mailer.smtp_addr, port, local_hostname=helo, timeout=timeout)
    except (OSError, smtplib.SMTPException) as e:
        raise MailError(f"failed to establish network connection to SMTP server: {e}") from None
    try:
        try:
            client.ehlo(helo)
        except smtplib.SMTPException as e:
            raise MailError(f"failed to issue HELO command: {e}") from None
        if mailer.protocol == "smtp+starttls":
            if client.has_extn("starttls"):
                try:
                    client.starttls(context=context)
                    client.ehlo(helo)
                except (OSError, smtplib.SMTPException) as e:
                    raise MailError(f"failed to start TLS connection: {e}") from None
            else:
                log.warn("StartTLS requested, but SMTP server does not support it; falling back to regular SMTP",
                         "mailer")
        if mailer.user:
            if not client.has_extn("auth"):
                raise MailError("SMTP server does not support AUTH, but credentials provided")
            try:
                client.login(mailer.user, mailer.passwd)  # CRAM-MD5, then PLAIN, then LOGIN: as Gitea
            except smtplib.SMTPException as e:
                raise MailError(f"failed to authenticate SMTP: {e}") from None
        sender = mailer.from_email
        if mailer.envelope_from == "<>":
            sender = ""
        elif mailer.envelope_from:
            sender = email.utils.parseaddr(mailer.envelope_from)[1]
        try:
            client.send_message(msg, from_addr=sender, to_addrs=[msg["To"]])
        except smtplib.SMTPException as e:
            raise MailError(f"failed to send the message: {e}") from None
        try:
            client.quit()
        except (OSError, smtplib.SMTPException) as e:
            log.error(f"Quit client failed: {e}", "mailer")
    finally:
        client.close()


class Queue:
    """Gitea's mail queue in one thread: messages are sent after the request was answered."""

    def __init__(self, settings):
        self.settings = settings
        self.q = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="mailer", daemon=True)
        self.thread.start()

    def push(self, to, subject, body):
        self.q.put(build(self.settings.mailer, to, subject, body))

    def _run(self):
        while True:
            msg = self.q.get()
            try:
                deliver(self.settings.mailer, msg)
            except MailError as e:
                log.error(f"Failed to send emails [{msg['To']}]: {e}", "mailer")
            except Exception as e:  # noqa: BLE001 - keep the queue alive whatever one message does
                log.error(f"Failed to send emails [{msg['To']}]: {type(e).__name__}: {e}", "mailer")

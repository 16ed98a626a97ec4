"""tasks/nginx.py + tasks/certbot.py: HTTPS from the outside, as a user's browser sees it."""

import json
import re
import shutil
import socket
import ssl
import subprocess
import time
import warnings

import pytest

from tests.conftest import skip_because


def test_nginx_config_valid_and_running(target):
    assert target.sudo("nginx -t").rc == 0
    assert target.service("nginx") == (True, True)


def test_certificate_issued_and_renewal_scheduled(target):
    renewal = target.sudo(f"cat /etc/letsencrypt/renewal/{target.domain}.conf").stdout
    assert f"server = {target.data['acme_server']}" in renewal
    assert "authenticator = webroot" in renewal
    assert "systemctl reload nginx" in renewal  # the deploy hook, kept for renewals
    assert target.service("certbot.timer") == (True, True)


def test_healthz_through_https(target):
    status, headers, body = target.https_get("/api/healthz")
    assert status == 200
    assert json.loads(body)["status"] == "pass"


def test_hsts_and_no_version_leak(target):
    _, headers, _ = target.https_get("/")
    assert headers["strict-transport-security"] == "max-age=63072000"
    assert headers["server"] == "nginx"


# The front door's headers (templates/nginx/gitea-https.conf.j2, docs/concepts/front-door.md), each
# with the one value a browser must see. Permissions-Policy is checked by what it grants, below.
FRONT_DOOR_HEADERS = {
    "strict-transport-security": "max-age=63072000",
    "x-content-type-options": "nosniff",
    "referrer-policy": "strict-origin-when-cross-origin",
    "x-frame-options": "SAMEORIGIN",
}
# What Gitea's UI uses, for its own origin only: passkeys/WebAuthn (sign in, register), the copy
# buttons, and fullscreen video in rendered files. Everything else the policy names is off.
GITEA_USES = {"publickey-credentials-get": "(self)", "publickey-credentials-create": "(self)",
              "clipboard-write": "(self)", "fullscreen": "(self)"}
NEVER_USED = {"camera", "microphone", "geolocation", "payment", "usb", "display-capture"}

# (path, status): a page and the health API that Gitea serves, a 404 Gitea answers and a 404 nginx
# answers itself. add_header without `always` skips both 404s. None: any status below 400 (a
# production "/" may redirect to the login page).
HEADER_PAGES = [("/", None), ("/api/healthz", 200), ("/gitea-deploy-host-check-no-such-page", 404),
                ("/metrics", 404)]


def _response_head(target, path: str) -> tuple[int, list[tuple[str, str]]]:
    """GET https://<domain><path> over the host's TLS listener: the status and every header line
    as sent, repeats included (Target.https_get keeps one value per name)."""
    with (socket.create_connection((target.address, 443), timeout=10) as raw,
          target.tls_context().wrap_socket(raw, server_hostname=target.domain) as tls):
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {target.domain}\r\nConnection: close\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head and (chunk := tls.recv(65536)):
            head += chunk
    status_line, *lines = head.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    return int(status_line.split()[1]), [(k.strip().lower(), v.strip()) for k, _, v in
                                         (line.partition(":") for line in lines)]


def _permissions_policy(value: str) -> dict[str, str]:
    """feature -> allowlist of a Permissions-Policy value (a structured-field dictionary of inner
    lists); a malformed member fails the check, as a browser would drop it."""
    members = [m.strip() for m in value.split(",")]
    bad = [m for m in members if not re.fullmatch(r'[a-z][a-z0-9-]*=\((self)?( "https://[^"]+")*\)', m)]
    assert not bad, f"malformed Permissions-Policy members: {bad}"
    return dict(m.split("=", 1) for m in members)


@pytest.mark.parametrize("path, status", HEADER_PAGES, ids=[p for p, _ in HEADER_PAGES])
def test_security_headers_exactly_once(target, path, status):
    got, head = _response_head(target, path)
    assert got == status if status else got < 400, f"{path} answered {got}"
    sent = {name: [v for n, v in head if n == name] for name in [*FRONT_DOOR_HEADERS, "permissions-policy"]}
    policies = sent.pop("permissions-policy")
    assert sent == {name: [value] for name, value in FRONT_DOOR_HEADERS.items()}
    assert len(policies) == 1, f"Permissions-Policy sent {len(policies)} times on {path}: {policies}"
    features = _permissions_policy(policies[0])
    assert {f: a for f, a in features.items() if a != "()"} == GITEA_USES  # granted, and only to self
    assert {f for f, a in features.items() if a == "()"} >= NEVER_USED


def test_metrics_not_public(target):
    status, _, _ = target.https_get("/metrics")
    assert status == 404


def test_http_redirects_to_https(target):
    status, headers, _ = target.http_get("/explore/repos?q=1")
    assert status == 301
    assert headers["location"] == f"https://{target.domain}/explore/repos?q=1"


def test_acme_challenge_path_served_on_http(target):
    token = "gitea-deploy-host-check"
    target.sudo(f"echo ok > /var/www/letsencrypt/.well-known/acme-challenge/{token} 2>/dev/null || "
                f"(mkdir -p /var/www/letsencrypt/.well-known/acme-challenge && "
                f"echo ok > /var/www/letsencrypt/.well-known/acme-challenge/{token})")
    try:
        status, _, body = target.http_get(f"/.well-known/acme-challenge/{token}")
    finally:
        target.sudo(f"rm -f /var/www/letsencrypt/.well-known/acme-challenge/{token}")
    assert (status, body.strip()) == (200, "ok")


@pytest.mark.parametrize("version", ["TLSv1_2", "TLSv1_3"])
def test_modern_tls_versions_accepted(target, version):
    ctx = target.tls_context()
    ctx.minimum_version = ctx.maximum_version = getattr(ssl.TLSVersion, version)
    with socket.create_connection((target.address, 443), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=target.domain) as tls:
            assert tls.version() == version.replace("_", ".")


# Mozilla's "intermediate" TLS 1.2 suites (ssl-config.mozilla.org, guidelines 5.7), by OpenSSL name.
INTERMEDIATE_TLS12 = {
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    "DHE-RSA-AES128-GCM-SHA256", "DHE-RSA-AES256-GCM-SHA384", "DHE-RSA-CHACHA20-POLY1305",
}


def test_only_intermediate_tls12_suites_are_offered(target):
    """Every TLS 1.2 suite this client's OpenSSL knows, offered alone: the server takes only
    intermediate ones (and some). TLS 1.3's suites are all AEAD and not configurable in nginx."""
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    probe.set_ciphers("ALL:@SECLEVEL=0")
    known = {c["name"] for c in probe.get_ciphers() if c["protocol"] == "TLSv1.2"}
    accepted = set()
    for name in sorted(known):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers(f"{name}:@SECLEVEL=0")
        try:
            with socket.create_connection((target.address, 443), timeout=10) as raw:
                with ctx.wrap_socket(raw, server_hostname=target.domain) as tls:
                    accepted.add(tls.cipher()[0])
        except ssl.SSLError:
            pass
    assert accepted and accepted <= INTERMEDIATE_TLS12, f"offered beyond intermediate: {accepted - INTERMEDIATE_TLS12}"


def _legacy_client(version: str) -> ssl.SSLContext:
    """A client that offers `version` (TLSv1 or TLSv1_1) and nothing else (security level 0:
    OpenSSL 3 refuses both at its default level)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    with warnings.catch_warnings():  # deprecated is the point: the server must refuse it
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ctx.maximum_version = getattr(ssl.TLSVersion, version)
    return ctx


def _client_can_speak(ctx: ssl.SSLContext, version: str, workdir) -> str | None:
    """None if `ctx` completes a `version` handshake with a local `openssl s_server -tls1[_1]` (on
    127.0.0.1, a throwaway self-signed certificate); else why not."""
    flag, shown = {"TLSv1": ("-tls1", "TLSv1"), "TLSv1_1": ("-tls1_1", "TLSv1.1")}[version]
    if not shutil.which("openssl"):
        return "no openssl on PATH to run a local TLS 1.1 server"
    key, cert = workdir / "tls11-key.pem", workdir / "tls11-cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=localhost", "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        ["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-naccept", "1", "-www", flag,
         "-cipher", "DEFAULT:@SECLEVEL=0", "-cert", str(cert), "-key", str(key)],
        # -www: answer a status page without reading stdin (on EOF of stdin s_server hangs up)
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # s_server prints ACCEPT once it listens
            line = server.stdout.readline()
            if not line or "ACCEPT" in line:
                break
        if server.poll() is not None:
            return f"openssl s_server {flag} did not start: {server.stdout.read().strip()[-500:]}"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                    version = tls.version()
        except (OSError, ssl.SSLError) as error:
            return f"a {shown} handshake with a local {shown} server failed: {error}"
        return None if version == shown else f"the local {shown} server negotiated {version}"
    finally:
        server.kill()
        server.wait(timeout=10)


@pytest.mark.parametrize("legacy", ["TLSv1", "TLSv1_1"])
def test_legacy_tls_refused(target, tmp_path, legacy):
    """The server refuses TLS 1.0 and 1.1, proven by its own protocol_version alert.

    A modern OpenSSL may refuse to offer them at all, and then any handshake fails on the client's
    side, proving nothing about the server. So first the same client context completes a handshake
    of that version with a local server of it; then the server under test must answer it with a
    protocol_version alert (OpenSSL: TLSV1_ALERT_PROTOCOL_VERSION, "tlsv1 alert protocol version",
    an alert received from the peer). UNSUPPORTED_PROTOCOL would be the client rejecting the
    version the server chose, NO_PROTOCOLS_AVAILABLE the client offering none: neither counts.
    """
    ctx = _legacy_client(legacy)
    why_not = _client_can_speak(ctx, legacy, tmp_path)
    if why_not:
        skip_because(f"this machine's OpenSSL ({ssl.OPENSSL_VERSION}) cannot offer {legacy}, so the "
                     f"server's refusal cannot be told from the client's: {why_not}")
    with socket.create_connection((target.address, 443), timeout=10) as raw:
        with pytest.raises(ssl.SSLError) as refused:
            ctx.wrap_socket(raw, server_hostname=target.domain)
    assert refused.value.reason == "TLSV1_ALERT_PROTOCOL_VERSION", (
        f"the handshake failed, but not by the server's protocol_version alert: {refused.value!r}")

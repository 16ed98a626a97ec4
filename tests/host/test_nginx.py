"""tasks/nginx.py + tasks/certbot.py: HTTPS from the outside, as a user's browser sees it."""

import json
import socket
import ssl
import warnings

import pytest


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


def test_legacy_tls_refused(target):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.set_ciphers("ALL:@SECLEVEL=0")  # let this client offer TLS 1.1, so the server must refuse
    with warnings.catch_warnings():  # deprecated is the point: the server must refuse it
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    with socket.create_connection((target.address, 443), timeout=10) as raw:
        with pytest.raises(ssl.SSLError):
            ctx.wrap_socket(raw, server_hostname=target.domain)

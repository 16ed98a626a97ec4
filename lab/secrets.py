"""Lab-generated key material, all under .lab/ (gitignored): the operator's SSH key and pebble's
listener certificate. Generated once, reused; never committed."""

import base64
import hashlib
import os

from lab import LAB_DIR, LabError
from lab.util import locked, run, say

SSH_KEY = LAB_DIR / "id_ed25519"
PEBBLE_DIR = LAB_DIR / "pebble"
PEBBLE_CERT = PEBBLE_DIR / "listener.pem"
PEBBLE_KEY = PEBBLE_DIR / "listener.key"


def ensure_ssh_key() -> str:
    """Create .lab/id_ed25519 (0600) once; return the public key line."""
    with locked("keys"):
        if not SSH_KEY.exists():
            LAB_DIR.mkdir(parents=True, exist_ok=True)
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "gitea-deploy-lab", "-f", str(SSH_KEY)])
            say(f"generated the lab SSH key {SSH_KEY}")
        os.chmod(SSH_KEY, 0o600)
        pub = SSH_KEY.with_suffix(".pub")
        if not pub.exists():
            pub.write_text(run(["ssh-keygen", "-y", "-f", str(SSH_KEY)]).stdout)
        return pub.read_text().strip()


def key_fingerprint(pubkey_line: str) -> str:
    try:
        blob = base64.b64decode(pubkey_line.split()[1])
    except (IndexError, ValueError) as e:
        raise LabError(f"unreadable public key {pubkey_line!r}") from e
    return hashlib.sha256(blob).hexdigest()[:16]


def ensure_pebble_cert() -> None:
    """Pebble's TLS listener certificate: self-signed, SAN IP:127.0.0.1 + DNS:localhost.

    It is its own trust anchor (acme_ca_bundle), so it carries the CA extensions that strict X.509
    verification (Python 3.13's default) asks of a root. Renewed when it has less than 30 days left."""
    with locked("keys"):
        if PEBBLE_CERT.exists() and PEBBLE_KEY.exists():
            cp = run(["openssl", "x509", "-checkend", str(30 * 86400), "-noout", "-in", str(PEBBLE_CERT)],
                     check=False)
            if cp.returncode == 0:
                return
        PEBBLE_DIR.mkdir(parents=True, exist_ok=True)
        run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-days", "3650", "-subj", "/CN=gitea-deploy-lab pebble listener",
             "-keyout", str(PEBBLE_KEY), "-out", str(PEBBLE_CERT),
             "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,digitalSignature,keyCertSign",
             "-addext", "extendedKeyUsage=serverAuth"],
            what="openssl: pebble listener certificate")
        os.chmod(PEBBLE_KEY, 0o600)
        os.chmod(PEBBLE_CERT, 0o644)
        say(f"generated pebble's listener certificate {PEBBLE_CERT}")

"""A real PostgreSQL standing in for RDS: its own container on the lab network, TLS only.

What the deploy's external-database mode (`database_endpoint`) meets in AWS, made from the lab's
PostgreSQL image: a server reached over the network at an address, a certificate for that address
signed by a CA of its own (RDS's regional bundle plays that part in AWS), password authentication
and no plain-text connections (RDS's rds.force_ssl = 1), user and database `gitea` (what
terraform/database.tf creates). Not an EC2 sidecar: like RDS it is another machine, and it
outlives the hosts that use it, so a restore onto a new host finds the database where it was.

    from lab import api
    db = api.rds_up("prod")     # {"endpoint": "172.18.0.9:5432", "ca": PEM, "password": ..., ...}
    api.rds_down("prod")
"""

from __future__ import annotations

import secrets as _random
import shutil

from lab import LAB_DIR, LabError, images
from lab.config import LABEL_ROLE, NETWORK, SIDECAR_TIMEOUT
from lab.engine import container, docker, logs, remove_containers, running
from lab.hosts import validate_name
from lab.util import GiveUp, locked, run, say, wait_until

PREFIX = "gitea-lab-rds-"
RDS_DIR = LAB_DIR / "rds"
USER = DATABASE = "gitea"

# Runs as root in the container: the server key must belong to postgres; then the image's own
# entrypoint (initdb on first start, steps down to postgres). It waits for the certificate,
# which can only be made once the container has its address.
_START = """
until [ -s /certs/ready ]; do sleep 0.2; done
install -o postgres -g postgres -m 600 /certs/server.key /var/lib/postgresql/server.key
install -o postgres -g postgres -m 644 /certs/server.crt /var/lib/postgresql/server.crt
exec docker-entrypoint.sh postgres -c ssl=on -c ssl_min_protocol_version=TLSv1.2 -c log_connections=on \
    -c ssl_cert_file=/var/lib/postgresql/server.crt -c ssl_key_file=/var/lib/postgresql/server.key
"""
# Sourced by the entrypoint after initdb: TCP clients must use TLS, as on RDS.
_FORCE_SSL = "sed -i 's/^host all all all/hostssl all all all/' \"$PGDATA/pg_hba.conf\"\n"


def name_of(name: str) -> str:
    return f"{PREFIX}{name}"


def up(name: str) -> dict:
    """Start (or reuse) the external PostgreSQL `name`; return its endpoint, CA, password."""
    validate_name(name)
    cname, folder = name_of(name), RDS_DIR / name
    with locked(f"rds-{name}"):
        info = container(cname)
        if running(info) and (folder / "ready").exists() and info["Config"]["Image"] == images.ensure("postgres"):
            return _describe(cname, folder)
        remove_containers(cname)
        shutil.rmtree(folder, ignore_errors=True)
        (folder / "initdb").mkdir(parents=True)
        (folder / "password").write_text(_random.token_urlsafe(24))
        (folder / "password").chmod(0o600)
        (folder / "initdb" / "force-ssl.sh").write_text(_FORCE_SSL)
        docker("run", "-d", "--name", cname, "--label", f"{LABEL_ROLE}=rds", "--network", NETWORK,
               "-e", f"POSTGRES_USER={USER}", "-e", f"POSTGRES_DB={DATABASE}",
               "-e", "POSTGRES_PASSWORD_FILE=/certs/password",
               "-v", f"{folder}:/certs:ro", "-v", f"{folder / 'initdb'}:/docker-entrypoint-initdb.d:ro",
               "--entrypoint", "bash", images.ensure("postgres"), "-c", _START)
        ip = container(cname)["NetworkSettings"]["Networks"][NETWORK]["IPAddress"]
        _certificates(folder, ip)
        (folder / "ready").write_text("1\n")

        def answers():
            if not running(container(cname)):
                raise GiveUp(f"{cname} exited\n{logs(cname)}")
            cp = docker("exec", cname, "bash", "-c",
                        'PGPASSWORD="$(cat /certs/password)" exec psql "$0" -tAc "$1"',
                        f"host={ip} user={USER} dbname={DATABASE} sslmode=verify-full sslrootcert=/certs/ca.pem",
                        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", check=False, timeout=30)
            if cp.stdout.strip() != "t":
                raise LabError(f"not answering over TLS yet: {cp.stderr.strip()[-300:]}")
            return True

        wait_until(f"{cname} to answer over TLS", answers, timeout=SIDECAR_TIMEOUT * 2, interval=0.5,
                   on_fail=lambda: logs(cname))
        say(f"external PostgreSQL {cname}: {ip}:5432 (TLS only, CA {folder / 'ca.pem'})")
        return _describe(cname, folder)


def connections(name: str) -> list[str]:
    """The server's `connection authorized` log lines (log_connections=on): who came in, and how."""
    return [line for line in logs(name_of(name), lines=100000).splitlines() if "connection authorized" in line]


def down(name: str) -> None:
    """Remove the external PostgreSQL `name` and its data. Idempotent."""
    remove_containers(name_of(name))
    shutil.rmtree(RDS_DIR / name, ignore_errors=True)


def _describe(cname: str, folder) -> dict:
    ip = container(cname)["NetworkSettings"]["Networks"][NETWORK]["IPAddress"]
    return {"container": cname, "endpoint": f"{ip}:5432", "ca": (folder / "ca.pem").read_text(),
            "password": (folder / "password").read_text(), "user": USER, "database": DATABASE}


def _certificates(folder, ip: str) -> None:
    """A CA of the database's own and a server certificate for its address (verify-full checks it)."""
    ca_key, ca, key, csr, crt = (folder / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.crt"))
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run(["openssl", "req", "-x509", *ec, "-days", "30", "-subj", "/CN=gitea-deploy-lab RDS stand-in CA",
         "-keyout", str(ca_key), "-out", str(ca), "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"], what="openssl: RDS stand-in CA")
    run(["openssl", "req", *ec, "-subj", f"/CN={ip}", "-keyout", str(key), "-out", str(csr)],
        what="openssl: RDS stand-in key")
    extensions = folder / "server.ext"
    extensions.write_text(f"subjectAltName=IP:{ip}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n")
    run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
         "-days", "30", "-out", str(crt), "-extfile", str(extensions)], what="openssl: RDS stand-in certificate")
    for path in (key, ca_key, folder / "password"):
        path.chmod(0o600)  # root in the container reads them (the key is copied for postgres)

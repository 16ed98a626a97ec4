"""What the lab lays over the production path: the lab's ENVIRONMENT_KEYS values for one host.

inventories/lab.py and tests/lab/test_prod_inventory.py both take them from here, so the lab's
differences from production are written once (inventories/sources.py ENVIRONMENT_KEYS).
"""

from __future__ import annotations

from lab import LAB_DIR, REPO, mail

ACME_SERVER = "https://127.0.0.1:14000/dir"  # pebble, in each host's network namespace
# The emulated AWS (moto) answers on 127.0.0.1:5050 in every host and takes any static key;
# production's instance role gives restic and boto3 their keys.
S3_ENDPOINT = "http://127.0.0.1:5050"
AWS_KEYS = {"backup_aws_access_key_id": "lab-moto-key", "backup_aws_secret_access_key": "lab-moto-not-secret"}
# Mail: the lab's own SMTP server (lab/mail.py) on the lab network, which stores every message so
# tests can read it. Plain SMTP without a login, as a relay on a private network; production
# names its provider (SES, ...) with smtps and a user whose password the operator puts in place.
MAILER = {"mailer_protocol": "smtp", "mailer_port": 25}
# The operator's values (group_data/prod.py in production).
OPERATOR = {"gitea_admin_email": "gitadmin@lab.test", "acme_email": "ops@lab.test"}


def _read(path) -> str | None:
    return path.read_text() if path.exists() else None


def overrides(state: dict, name: str) -> dict:
    """Host `name`'s lab values (addresses excepted: the host source has them), from the lab state."""
    h = state["hosts"][name]
    return {
        "ssh_key": str(REPO / state["ssh_key"]),
        "ssh_known_hosts_file": str(REPO / h["known_hosts"]),
        "ssh_strict_host_key_checking": "accept-new",
        "acme_server": ACME_SERVER,
        "acme_ca_bundle": (REPO / state["acme_ca_bundle"]).read_text(),
        # The root that signed the host's certificate, recorded by `up` (lab/api.py); a host made
        # before `up` recorded it probes against the system's CAs, and the probe says it fails.
        "monitoring_tls_ca_bundle": _read(LAB_DIR / "hosts" / name / "issuing-root.pem"),
        "gitea_image": state["images"]["gitea"],
        "postgres_image": state["images"]["postgres"],
        "s3_endpoint": S3_ENDPOINT,
        # Alertmanager's SNS receiver publishes to the same moto, whenever a topic is named.
        "alert_sns_api_url": S3_ENDPOINT,
        **AWS_KEYS,
        "mailer_host": mail.where()["host"],  # its address on the lab network (running since `up`)
        **MAILER,
        **OPERATOR,
        # A lab host is a container: its kernel is this machine's, only its network namespace
        # is its own (tasks/hardening.py sets the per-namespace sysctls, not kernel.* or fs.*).
        "sysctl_kernel": False,
    }


def grafana_runs(state: dict | None = None) -> bool:
    """Grafana runs in the lab only with LAB_IMAGES=upstream: its image comes from Docker Hub, which
    offline machines cannot reach, and the lab has no stand-in for it. The dashboards' provisioning
    is still checked (tests/unit/test_grafana.py) and their queries run against the lab's Prometheus
    (tests/lab/test_dashboards.py)."""
    if state is None:
        from lab import api

        state = api.state()
    return state.get("images_mode") == "upstream"


def grafana_note(state: dict, name: str) -> str:
    """What `lab converge` says about Grafana on host `name`."""
    from tasks.settings import defaults

    data = defaults()
    if not grafana_runs(state):
        return (f"Grafana: skipped (grafana_enabled off): its image {data['grafana_image']} cannot be pulled "
                f"offline; it starts only with LAB_IMAGES=upstream. Its provisioning is still checked "
                f"(tests/unit/test_grafana.py).")
    return (f"Grafana: on 127.0.0.1:{data['grafana_port']} inside {name}; user admin, password: "
            f"python -m lab ssh {name} sudo cat {data['data_root']}/secrets/grafana_admin_password")

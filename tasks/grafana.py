"""Grafana: the project's dashboards over the host's Prometheus, from the official image, in the
Compose project and only while grafana_enabled (docs/runbooks/monitoring.md).

How it reaches Prometheus: Prometheus listens on the host's 127.0.0.1 only, which a container on
the Compose network cannot reach; making Prometheus listen on the network's gateway too would break
"everything listens on loopback only". So Grafana runs with `network_mode: host` and binds its own
HTTP to 127.0.0.1:grafana_port (GF_SERVER_HTTP_ADDR): both stay loopback-only, nothing is
published. The price: Grafana shares the host's network namespace, so it could open any loopback
port a host process can; it runs as its image's unprivileged uid with no-new-privileges.

Its configuration is serialized here (provisioning YAML by yaml.safe_dump, the dashboards are
JSON files in files/grafana/dashboards/), written under <data_root>/grafana and mounted read-only.
A digest of all of it is a label of the service, so a changed file changes the Compose config
hash and `up` recreates Grafana (tasks/gitea.py StaleServices), also after a run killed between
writing the files and `up`.
"""

from __future__ import annotations

import hashlib
import json
from io import StringIO
from pathlib import Path

import yaml
from pyinfra import host

from tasks import REPO, snapshot
from tasks.common import owned_directory

SECRET = "grafana_admin_password"
DATASOURCE_UID = "prometheus"  # what every dashboard panel's datasource names
DASHBOARDS = REPO / "files/grafana/dashboards"
# In the container (the image's GF_PATHS_PROVISIONING; the dashboards where the provider reads them).
PROVISIONING_IN_CONTAINER = "/etc/grafana/provisioning"
DASHBOARDS_IN_CONTAINER = "/etc/grafana/dashboards"


def root(data) -> str:
    return f"{data.get('data_root')}/grafana"


def datasources(data) -> dict:
    """provisioning/datasources/: the host's Prometheus, the one datasource (prune: a datasource
    dropped here is deleted from Grafana too, none made by hand survives a restart as default)."""
    return {
        "apiVersion": 1,
        "prune": True,
        "datasources": [{
            "name": "Prometheus",
            "uid": DATASOURCE_UID,
            "type": "prometheus",
            "access": "proxy",  # Grafana's backend asks, the operator's browser never talks to Prometheus
            "url": f"http://127.0.0.1:{data.get('prometheus_port')}",
            "isDefault": True,
            "editable": False,
        }],
    }


def providers() -> dict:
    """provisioning/dashboards/: the project's dashboards from their directory, read-only in the UI
    (a change made there would be lost at the next deploy: change the JSON file instead)."""
    return {
        "apiVersion": 1,
        "providers": [{
            "name": "gitea-deploy",
            "folder": "gitea-deploy",
            "type": "file",
            "disableDeletion": True,
            "allowUiUpdates": False,
            "updateIntervalSeconds": 60,
            "options": {"path": DASHBOARDS_IN_CONTAINER, "foldersFromFilesStructure": False},
        }],
    }


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS.glob("*.json"))


def provisioning_files(data) -> dict[str, str]:
    """Path below root(data) -> content, everything Grafana reads besides its environment."""
    files = {
        "provisioning/datasources/gitea-deploy.yaml": yaml.safe_dump(datasources(data), sort_keys=False),
        "provisioning/dashboards/gitea-deploy.yaml": yaml.safe_dump(providers(), sort_keys=False),
    }
    for path in dashboard_files():
        files[f"dashboards/{path.name}"] = path.read_text()
    return files


def digest(data) -> str:
    content = json.dumps(provisioning_files(data), sort_keys=True).encode()
    return hashlib.sha256(content).hexdigest()


def environment(data) -> dict[str, str]:
    """GF_* settings. The admin password only as a file; no anonymous access, no sign-up, and no
    call home (update checks, usage reports, the news feed, plugin installs at start: a host need not
    reach grafana.com)."""
    return {
        "GF_SERVER_HTTP_ADDR": "127.0.0.1",
        "GF_SERVER_HTTP_PORT": str(data.get("grafana_port")),
        "GF_SECURITY_ADMIN_USER": "admin",
        "GF_SECURITY_ADMIN_PASSWORD__FILE": f"/run/secrets/{SECRET}",
        "GF_SECURITY_DISABLE_GRAVATAR": "true",
        "GF_AUTH_ANONYMOUS_ENABLED": "false",
        "GF_USERS_ALLOW_SIGN_UP": "false",
        "GF_ANALYTICS_REPORTING_ENABLED": "false",
        "GF_ANALYTICS_CHECK_FOR_UPDATES": "false",
        "GF_ANALYTICS_CHECK_FOR_PLUGIN_UPDATES": "false",
        "GF_PLUGINS_PREINSTALL_DISABLED": "true",
        "GF_NEWS_NEWS_FEED_ENABLED": "false",
    }


def context(data) -> dict | None:
    """The compose template's `grafana` (None while grafana_enabled is off: no service)."""
    if not data.get("grafana_enabled"):
        return None
    base = root(data)
    return {
        "environment": environment(data),
        "secret": SECRET,
        "volumes": [
            f"{base}/data:/var/lib/grafana",
            f"{base}/provisioning:{PROVISIONING_IN_CONTAINER}:ro",
            f"{base}/dashboards:{DASHBOARDS_IN_CONTAINER}:ro",
        ],
        "digest": digest(data),
        "health_url": f"http://127.0.0.1:{data.get('grafana_port')}/api/health",
    }


def grafana_files() -> None:
    """Run by the Gitea stack stage before the compose file: Grafana's directories and files."""
    if not host.data.get("grafana_enabled"):
        return
    base = root(host.data)
    snapshot.directory(name="Grafana directory", path=base, user="root", group="root", mode="755")
    # Grafana's database (users, sessions): the image's uid only.
    owned_directory(f"{base}/data", host.data.grafana_uid, host.data.grafana_uid, "700")
    for sub in ("provisioning", "provisioning/datasources", "provisioning/dashboards", "dashboards"):
        snapshot.directory(name=f"Grafana {sub} directory", path=f"{base}/{sub}", user="root", group="root",
                           mode="755")
    # Not secret: the datasource holds an address, the dashboards queries.
    for path, content in provisioning_files(host.data).items():
        snapshot.put(name=f"Grafana {path}", src=StringIO(content), dest=f"{base}/{path}",
                     user="root", group="root", mode="644")

"""Restore a backup onto ONE deployed host, from the control machine (docs/runbooks/restore.md):

    pyinfra INVENTORY restore.py --limit HOST                          # the newest snapshot
    pyinfra INVENTORY restore.py --limit HOST --data 'restore_snapshot="ID"'
    pyinfra INVENTORY restore.py --limit HOST --data restore_force=true   # over a host holding data

It runs `gitea-restore` on the host (installed by deploy.py's backup stage): the database, Gitea's
data, configuration and secrets from the snapshot, hooks regenerated, Gitea started and verified
healthy. It refuses a host that already holds repositories or users unless forced.
"""

import shlex

from pyinfra import host, state
from pyinfra.operations import server

from tasks import monitoring, settings
from tasks.common import tcp_nodelay

tcp_nodelay()
settings.require_defaults(host.data.dict())
settings.validate(host.data.dict(), host=host.name)
if len(state.activated_hosts) != 1:
    # A restore replaces a host's data: never on a whole inventory by accident.
    raise settings.SettingsError(f"restore.py targets {len(state.activated_hosts)} hosts: name one with --limit")

args = ["--snapshot", str(host.data.restore_snapshot)] + (["--force"] if host.data.restore_force else [])
server.shell(
    # What it waits for, at most (files/backup/gitea_backup.py DATA_TIMEOUT, HEALTH_TIMEOUT).
    name=f"Restore snapshot {host.data.restore_snapshot} (gitea-restore: restic restore and database load, "
         "each at most 12 h, then up to 300 s for Gitea healthy)",
    commands=["gitea-restore " + shlex.join(args)],
)
# The snapshot brought Gitea's metrics token back: Prometheus's copy of it follows (the same op
# as the monitoring stage's), so the restored host scrapes Gitea and its next deploy changes nothing.
server.shell(
    name="Secrets for Prometheus and the exporters, from the restored ones (root:prometheus 0440)",
    commands=[monitoring.copy_secrets_command(monitoring.secret_copies(host.data))],
)

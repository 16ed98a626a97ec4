"""Take a Debian 13 host to Gitea behind HTTPS. Run: pyinfra inventories/<env>.py deploy.py

Every stage is one concern under tasks/; the order matters: every stage's packages first (one apt
transaction), the firewall before the engine publishes a port, the engine before the stack, the
stack's secrets and the programs an image update runs through (gitea-update) before the stack, the
stack before nginx proxies to it, nginx before fail2ban reads its log.
"""

from pyinfra import host

from tasks import settings
from tasks.alerting import alerting
from tasks.backup import backup
from tasks.base import base
from tasks.common import tcp_nodelay
from tasks.docker import docker
from tasks.fail2ban import fail2ban
from tasks.firewall import firewall
from tasks.gitea import gitea
from tasks.hardening import hardening
from tasks.heartbeat import heartbeat
from tasks.monitoring import monitoring
from tasks.nginx import nginx
from tasks.node_exporter import node_exporter
from tasks.packages import packages
from tasks.secrets import secrets
from tasks.updates import update_programs

tcp_nodelay()  # ~46 ms -> ~3 ms a remote command (tasks/common.py)
# Inventories validate before connecting; this catches `--data` overrides too, before any op runs.
settings.require_defaults(host.data.dict())
settings.validate(host.data.dict(), host=host.name)

packages()
base()
hardening()
firewall()
docker()
secrets()
update_programs()
gitea()
nginx()
fail2ban()
node_exporter()
monitoring()
alerting()
heartbeat()
backup()

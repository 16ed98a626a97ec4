"""Names the lab owns. Everything Docker-side carries the label ``gitea-deploy-lab.role``."""

from tasks.settings import defaults as _deploy_defaults

NETWORK = "gitea-lab"                      # lab-owned bridge: attacker containers can reach hosts' IPs
IMAGE_REPO = "gitea-deploy-lab"            # local image names: gitea-deploy-lab/<name>:<content hash>

LABEL_ROLE = "gitea-deploy-lab.role"       # host | sidecar | registry
LABEL_HOST = "gitea-deploy-lab.host"       # which host a sidecar/volume belongs to
LABEL_IMAGE = "gitea-deploy-lab.image"     # the base tag a host was created from
LABEL_KEY = "gitea-deploy-lab.key"         # fingerprint of the lab key put in authorized_keys
LABEL_ADMIN_PORT = "gitea-deploy-lab.admin-port"
LABEL_SPEC = "gitea-deploy-lab.spec"       # hash of HOST_RUN_FLAGS: a host made with other flags is recreated
LABEL_AWS = "gitea-deploy-lab.aws"         # on a moto sidecar: the shared emulated AWS it forwards to

# How a host container runs (LAB.md section 2), besides names, volumes and ports. Never --privileged:
# it fails on these machines. Why each flag:
HOST_RUN_FLAGS = (
    "--stop-signal", "SIGRTMIN+3", "--stop-timeout", "60",  # systemd's clean shutdown on stop/restart
    "--cap-add", "SYS_ADMIN",      # systemd (mounts, namespaces) and the nested engine
    "--cap-add", "NET_ADMIN",      # the nested engine's bridges and iptables
    "--cap-add", "SYS_PTRACE",     # root may read other users' /proc/PID/ns, as on a VM: without it the
                                   # nested `docker exec` (health checks!) into a non-root container fails
    "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
    "--tmpfs", "/run", "--tmpfs", "/run/lock",
    "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--cgroupns=host",
)

DEFAULT_ADMIN_PORT = 2222

# Container ports published on 127.0.0.1 (random host ports chosen once per host, kept across reboots).
# state key -> container port ("ssh_port" is the admin port and is filled in at run time).
PUBLISHED = {"ssh_port": None, "https_port": 443, "http_port": 80, "git_ssh_port": 22}
HOST_PORT_RANGE = (20000, 30000)           # below the kernel's ephemeral range, away from docker's own

# The outer registry the outer engine pushes into; sidecars serve the same volume inside each host.
REGISTRY_CONTAINER = "gitea-lab-registry"
REGISTRY_VOLUME = "gitea-lab-registry-data"
REGISTRY_IN_HOST = "127.0.0.1:5000"

# The Gitea stand-in tags the lab registry holds: one Dockerfile (lab/images/gitea-standin), built
# per tag with GITEA_STANDIN_VERSION=<tag>+standin plus these build args (its README, "Versions").
# Deploys use STANDIN_GITEA_DEFAULT; the others let an updater be tested (issue 12).
STANDIN_GITEA_DEFAULT = "1.27.3"
STANDIN_GITEA_TAGS = {
    "1.27.3": {},                                                  # N: what deploys use
    "1.27.4": {},                                                  # N+1: same line and schema, healthy
    "1.27.5": {"GITEA_STANDIN_FAULT": "unhealthy-after-migrate"},  # N+2: migrates, then healthz 500
    "1.28.0": {},                                                  # next minor line: migrates, healthy
}

# The PostgreSQL majors the lab registry holds (lab/postgres:<major>), each Debian's own package from
# the suite that ships it (lab/images/postgres, built with PG_MAJOR=<major> on that suite's base).
# Deploys use 17; 15 is the old major the major-upgrade drill starts from (issue 12).
STANDIN_POSTGRES_TAGS = {"17": "trixie", "15": "bookworm"}

# Images the deploy pulls inside a host. state key -> (lab image dir, repository, tag)
STANDIN_IMAGES = {
    "gitea": ("gitea-standin", "lab/gitea-standin", STANDIN_GITEA_DEFAULT),
    "postgres": ("postgres", "lab/postgres", "17"),
}
# LAB_IMAGES=upstream: the real pinned references production uses (its defaults), pulled from
# the internet where reachable.
UPSTREAM_IMAGES = {
    "gitea": _deploy_defaults()["gitea_image"],
    "postgres": _deploy_defaults()["postgres_image"],
}
IMAGES_MODES = ("standin", "upstream")

# Sidecars: suffix -> lab image dir. They share the host's network namespace (--network container:H).
SIDECARS = ("registry", "pebble", "moto")

# Shared emulated AWS (`up --aws NAME`): one moto server in container AWS_PREFIX + NAME on the lab
# network, which several hosts reach on their own 127.0.0.1:MOTO_PORT through a forwarding sidecar.
AWS_PREFIX = "gitea-lab-aws-"
MOTO_PORT = 5050

# The lab's mail server (lab/mail.py): one SMTP server on the lab network for every host; Gitea's
# [mailer] reaches it at its address there, plain SMTP on port 25 (lab/environment.py).
MAIL_CONTAINER = "gitea-lab-mail"
MAIL_PORT = 25

# Bounds (seconds) for every wait.
ENGINE_TIMEOUT = 90
SYSTEMD_TIMEOUT = 90
SSH_TIMEOUT = 60
SIDECAR_TIMEOUT = 60
BUILD_TIMEOUT = 1200
DEBOOTSTRAP_TIMEOUT = 1200

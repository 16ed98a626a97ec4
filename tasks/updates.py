"""Image updates: which images the stack should run, what is refused, and the host programs that
change them safely (gitea-update and gitea-pg-upgrade, with the backup job's gitea-backup and gitea-restore).

An image change is never a plain `compose up`: when the images the deploy wants differ from the
ones the stack's containers were made from, the compose file goes beside the live one
(compose.next.yaml) and `gitea-update apply` takes it through backup, pull, up, checks and, on
failure, rollback (files/updates/gitea_update.py). Refused before any host is touched: a Gitea
older than the one that ran on this data, and a PostgreSQL major other than the data's.
docs/concepts/updates.md explains the design, docs/runbooks/upgrade.md the operator's side.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from io import StringIO

from pyinfra import host, logger
from pyinfra.api import FactBase, deploy
from pyinfra.api.exceptions import DeployError

from tasks import backup, host_module, snapshot
from tasks.backup import CONFIG_DIR, LIB_DIR, STATE_DIR, configuration_directory, render_env, textfile
from tasks.common import REPO, apply_when_stale

UPDATE_DIR = REPO / "files/updates"
ENV_FILE = f"{CONFIG_DIR}/update.env"
STATE_FILE = f"{STATE_DIR}/update.json"
PG_UPGRADE_FILE = f"{STATE_DIR}/pg-upgrade.json"  # exists while gitea-pg-upgrade runs (or died mid-way)
METRICS_NAME = "gitea_update.prom"
MODULES = ("gitea_update.py", "gitea_registry.py", "gitea_window.py", "gitea_pg_upgrade.py")
PROGRAMS = ("gitea-update", "gitea-pg-upgrade")
AUTO_UNIT = "gitea-update-auto"  # .service runs `gitea-update auto`, .timer opens the window
PROJECT = "gitea"  # templates/gitea/compose.yaml.j2's `name:`: Compose labels its containers with it


registry = host_module("gitea_registry")  # image references, versions, LINES
window = host_module("gitea_window")  # the update window
LINES = registry.LINES


def next_compose(data) -> str:
    return f"{data.get('data_root')}/compose.next.yaml"


def previous_compose(data) -> str:
    return f"{data.get('data_root')}/compose.previous.yaml"


def metrics_file(data) -> str:
    return textfile(data, METRICS_NAME)


def update_env(data) -> list[tuple[str, str, str]]:
    """update.env as (key, value, comment) rows: what gitea-update reads beyond backup.env."""
    from tasks.monitoring import PROBE_CA_FILE  # tasks.monitoring imports the stack's modules

    def u(key: str) -> str:
        return f"GITEA_UPDATE_{key}"

    return [
        (u("NEXT_COMPOSE"), next_compose(data), "The compose file the deploy wants; an update makes it the live one."),
        (u("PREVIOUS_COMPOSE"), previous_compose(data), "The live file as it was, while an update runs."),
        (u("STATE_FILE"), STATE_FILE, "Pending update, last outcome, images that failed."),
        (u("METRICS_FILE"), metrics_file(data), "node_exporter's textfile collector reads it."),
        (u("DOMAIN"), data.get("gitea_domain"), "healthz is checked through nginx under this name."),
        (u("CA_FILE"), PROBE_CA_FILE if data.get("monitoring_tls_ca_bundle") else "",
         "Empty: the system's CAs verify the served certificate."),
        (u("PG_UPGRADE_FILE"), PG_UPGRADE_FILE, "gitea-pg-upgrade's plan; the deploy refuses to run while it exists."),
        (u("AUTO"), "true" if data.get("auto_update") else "false", "gitea-update auto: newer patch releases."),
        (u("WINDOW"), data.get("update_window"), "When gitea-update auto may change anything (host's time zone)."),
        (u("REBOOT"), "true" if data.get("update_reboot") else "false",
         "Reboot in the window when /var/run/reboot-required exists."),
    ]


def auto_timer(data) -> str:
    """The timer that opens the update window (Persistent=false: a window missed while the host was
    off is skipped, never made up at boot in the working day)."""
    return ("# Managed by gitea-deploy (tasks/updates.py).\n[Unit]\nDescription=gitea-update auto: the update window "
            f"({data.get('update_window')})\n\n[Timer]\nOnCalendar={window.on_calendar(window.parse_window(data.get('update_window')))}\n"
            "Persistent=false\n\n[Install]\nWantedBy=timers.target\n")


# --- what runs on the host -------------------------------------------------------------------


@dataclass
class Seen:
    """The stack as the host has it: each service's container image, the PostgreSQL major of the
    data directory (None: no cluster yet), gitea-update's state, and whether a PostgreSQL major
    upgrade is under way (or died mid-way: its plan file exists)."""

    images: dict[str, str] = field(default_factory=dict)
    pg_major: int | None = None
    state: dict = field(default_factory=dict)
    pg_upgrade: bool = False


class StackImages(FactBase):
    """One command: the image of each container of the Compose project (running or not), the data
    directory's PG_VERSION, gitea-update's state file, gitea-pg-upgrade's plan file."""

    def command(self, pg_version_file: str, state_file: str, pg_upgrade_file: str = PG_UPGRADE_FILE) -> str:
        labels = shlex.quote('{{index .Config.Labels "com.docker.compose.service"}} {{.Config.Image}}')
        return (f"if command -v docker >/dev/null; then "
                f"ids=$(docker ps -aq --filter label=com.docker.compose.project={PROJECT}); "
                f"[ -z \"$ids\" ] || docker inspect --format {labels} $ids | sed 's/^/image /'; fi; "
                f"[ ! -f {shlex.quote(pg_version_file)} ] || sed 's/^/pg /' {shlex.quote(pg_version_file)}; "
                f"[ ! -f {shlex.quote(state_file)} ] || printf 'state %s\\n' \"$(tr -d '\\n' < {shlex.quote(state_file)})\"; "
                f"[ ! -e {shlex.quote(pg_upgrade_file)} ] || echo pg-upgrade; "
                f"true")

    @staticmethod
    def default() -> Seen:
        return Seen()

    def process(self, output: list[str]) -> Seen:
        seen = Seen()
        for line in output:
            kind, _, rest = line.strip().partition(" ")
            if kind == "image":
                service, _, image = rest.partition(" ")
                seen.images[service] = image
            elif kind == "pg" and rest.strip().isdigit():
                seen.pg_major = int(rest)
            elif kind == "state" and rest:
                seen.state = json.loads(rest)
            elif kind == "pg-upgrade":
                seen.pg_upgrade = True
        return seen


# --- the decision (pure, unit-tested) -------------------------------------------------------------


def version(image: str) -> tuple[tuple[int, ...], str] | None:
    """The tag's version, or None when the reference names none (a digest, an unversioned tag)."""
    try:
        return registry.parse_version(registry.parse_reference(image).tag)
    except ValueError:
        return None


def newer_in_line(have: str, pin: str, depth: int) -> bool:
    """Is `have` a later release of `pin`'s line: the same repository and variant (suffix), the
    same first `depth` numbers, a higher version? What gitea-update auto moves a pin to."""
    try:
        a, b = registry.parse_reference(have), registry.parse_reference(pin)
        return (a.registry, a.repository) == (b.registry, b.repository) and a.tag != b.tag \
            and registry.newest_in_line([a.tag], b.tag, depth) == a.tag
    except ValueError:  # a digest, or a tag that names no version: no line
        return False


def wanted_images(data) -> dict[str, str]:
    """service -> image as the inventory pins it."""
    found = {"gitea": data.get("gitea_image")}
    if not data.get("database_endpoint"):
        found["db"] = data.get("postgres_image")
    return found


@dataclass
class Plan:
    images: dict[str, str]  # what the compose file names
    update: bool  # goes through gitea-update (some container was made from another image)
    kept: dict[str, str] = field(default_factory=dict)  # pinned image -> why the running one stays


def plan(data, seen: Seen) -> Plan:
    """The images to run, or DeployError for what must never be done without a person."""
    wanted, kept = wanted_images(data), {}
    if seen.pg_upgrade:
        raise DeployError(
            f"a PostgreSQL major upgrade is under way on this host ({PG_UPGRADE_FILE} exists): the deploy does not "
            f"touch the stack meanwhile. Nothing was changed; deploy again once gitea-pg-upgrade has ended (a run "
            f"that died with the host: `gitea-pg-upgrade rollback`, docs/runbooks/upgrade.md)")
    if "db" in wanted and seen.pg_major is not None:
        pg = version(wanted["db"])
        if pg is None:
            raise DeployError(f"postgres_image {wanted['db']}: its tag names no version, so its PostgreSQL major "
                              f"cannot be checked against the data's ({seen.pg_major}); pin a {seen.pg_major}.x tag")
        if pg[0][0] != seen.pg_major:
            raise DeployError(
                f"postgres_image {wanted['db']} is PostgreSQL {pg[0][0]}, but the data in "
                f"{data.get('data_root')}/postgres is PostgreSQL {seen.pg_major}: a major upgrade is a dump and "
                f"restore, never an image change (docs/runbooks/upgrade.md, 'PostgreSQL major'). Nothing was changed; "
                f"pin a {seen.pg_major}.x image to go on")
    running = seen.images.get("gitea")
    # No switch lets the deploy itself go back: the old Gitea would only meet the newer database
    # (and refuse it). Going back is a restore with the old image (docs/runbooks/upgrade.md).
    if running and running != wanted["gitea"] and not newer_in_line(running, wanted["gitea"], LINES["gitea"]):
        now, then = version(running), version(wanted["gitea"])
        if now and then and then[0] < now[0]:
            raise DeployError(
                f"gitea_image {wanted['gitea']} is older than {running}, which runs on this data: Gitea migrates "
                f"its database one way, so a downgrade needs the backup taken before the upgrade "
                f"(docs/runbooks/upgrade.md, 'Downgrade'). Nothing was changed")
    failed = seen.state.get("failed") or {}
    images = dict(wanted)
    for service, image in wanted.items():
        have = seen.images.get(service)
        if have and service in LINES and newer_in_line(have, image, LINES[service]):
            images[service] = have  # gitea-update auto's patch release: the pin is its line's floor
        elif image in failed and have and have != image:
            images[service] = have
            kept[image] = f"it failed its update on this host ({failed[image].get('why', '?')}); {have} stays"
    changed = any(seen.images.get(s) and seen.images[s] != image for s, image in images.items())
    return Plan(images, update=changed or bool(seen.state.get("pending")), kept=kept)


def host_plan() -> Plan:
    """This host's plan, asked of the host while the deploy is prepared: a refusal stops the run
    before any operation has touched a host."""
    from tasks.gitea import pg_version_file  # tasks.gitea imports this module

    found = plan(host.data, host.get_fact(StackImages, pg_version_file=pg_version_file(host.data),
                                          state_file=STATE_FILE))
    for image, why in found.kept.items():
        logger.warning(f"{host.name}: {image} is not deployed: {why}. `gitea-update forget-failure` on the "
                       f"host lets the next deploy try it again")
    return found


@deploy("Update programs")
def update_programs():
    """gitea-update, gitea-pg-upgrade, gitea-backup and gitea-restore: before the stack, which an image change runs
    through gitea-update (the backup stage configures the job they share)."""
    data = host.data
    snapshot.directory(name="Host programs' code", path=LIB_DIR, mode="755")
    sources = {**{name: REPO / "files/backup" for name in (*backup.MODULES, *backup.PROGRAMS)},
               **{name: UPDATE_DIR for name in (*MODULES, *PROGRAMS)}}
    for name, source in sources.items():
        program = not name.endswith(".py")
        snapshot.put(name=f"Install {name}", src=str(source / name),
                     dest=f"/usr/local/sbin/{name}" if program else f"{LIB_DIR}/{name}", mode="755" if program else "644")
    configuration_directory(data)
    units = {f"{AUTO_UNIT}.service": StringIO((UPDATE_DIR / f"{AUTO_UNIT}.service").read_text()),
             f"{AUTO_UNIT}.timer": StringIO(auto_timer(data))}
    for unit, text in units.items():
        snapshot.put(name=f"Unit {unit}", src=text, dest=f"/etc/systemd/system/{unit}", mode="644")
    # Reloaded until systemd has run the units on disk (tasks/common.py): a run killed between writing
    # a unit and the reload is finished by the next one.
    apply_when_stale("Update window's timer reloaded for its units", marker="update-timer",
                     effective=f"cat {' '.join(f'/etc/systemd/system/{unit}' for unit in units)}",
                     command=f"systemctl daemon-reload && systemctl try-restart {AUTO_UNIT}.timer")
    # Off: the timer stays installed but stopped, so turning it on again is one setting.
    snapshot.service(name=f"{AUTO_UNIT}.timer {'on' if data.get('auto_update') else 'off'}",
                     service=f"{AUTO_UNIT}.timer", running=bool(data.get("auto_update")),
                     enabled=bool(data.get("auto_update")))
    snapshot.put(name="Update configuration", src=StringIO(render_env(update_env(data), "tasks/updates.py", "gitea-update")),
                 dest=ENV_FILE, mode="644")

"""gitea-update: move the Compose stack to new images in one sequence that can only end in two ways,
on the new images and healthy, or back on the old ones with the data as it was.

Installed by tasks/updates.py as /usr/local/lib/gitea-deploy/gitea_update.py beside the backup
job's module, whose configuration, lock, backup and restore it uses: an update is one more job
that must not overlap a backup or a restore. The deploy starts it (`gitea-update apply`) whenever
the images it wants differ from those the stack runs, after writing the compose file it wants
beside the live one (update.env: NEXT_COMPOSE). docs/concepts/updates.md explains the design.

The sequence: lock; pre-update backup (tag pre-update; a failure stops here, nothing changed);
Gitea's schema version; pull the new images (a failure stops here too); the new file in place, the
old one kept (PREVIOUS_COMPOSE); `up -d --wait`; checks (healthz through nginx under the public
name, the version Gitea reports, `gitea doctor check`). Any failure: the old file back and, when
Gitea's schema version moved (it migrated), the pre-update snapshot restored; `up --wait`. The
outcome goes to the state file, the journal and node_exporter's textfile collector (alerting).

Crash safety: the state file says an update is pending from before the pull until it ended; a run
that finds one whose new file is already in place finishes it (checks, keep or roll back).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from gitea_backup import (
    JobError,
    Restic,
    Stack,
    atomic_write,
    backup,
    guarded,
    handle_signals,
    job_lock,
    last_lines,
    load_config,
    log,
    parse_env,
    run,
)
from gitea_registry import LINES, RegistryError, list_tags, newest_in_line, parse_reference, parse_version
from gitea_restore import restore
from gitea_window import is_open, parse_window

CONFIG_FILE = "/etc/gitea-deploy/update.env"
PRE_UPDATE_TAG = "pre-update"
WAIT_SECONDS = 300  # `up --wait`'s bound for healthy containers (the deploy's STACK_WAIT)
PULL_TIMEOUT = 1800
CHECK_TIMEOUT = 120  # the checks after `up --wait`: nginx may still hold the old upstream connection
REBOOT_REQUIRED = "/var/run/reboot-required"


@dataclass(frozen=True)
class UpdateConfig:
    next_compose: str  # what the deploy wants; promoted to the live file by an update
    previous_compose: str  # the live file as it was, kept while an update runs
    state_file: str
    metrics_file: str
    domain: str  # the public name, resolved to this host for the healthz check through nginx
    ca_file: str  # what the served certificate chains to; empty: the system's CAs
    pg_upgrade_file: str  # gitea-pg-upgrade's plan while a PostgreSQL major upgrade runs

    auto: bool  # `auto` may look for and apply newer patch releases
    window: str  # when (gitea_window grammar); `auto` does nothing outside it
    reboot: bool  # `auto` reboots in the window when the OS asks for it

    KEYS = ("NEXT_COMPOSE", "PREVIOUS_COMPOSE", "STATE_FILE", "METRICS_FILE", "DOMAIN", "CA_FILE",
            "PG_UPGRADE_FILE", "AUTO", "WINDOW", "REBOOT")

    @classmethod
    def from_env(cls, values: dict[str, str]) -> UpdateConfig:
        missing = [f"GITEA_UPDATE_{k}" for k in cls.KEYS if f"GITEA_UPDATE_{k}" not in values]
        if missing:
            raise ValueError(f"{', '.join(missing)} not set in {CONFIG_FILE} (the deploy writes it; redeploy)")
        flags = {k: values[f"GITEA_UPDATE_{k}"] for k in ("AUTO", "REBOOT")}
        wrong = [f"GITEA_UPDATE_{k}={v!r}" for k, v in flags.items() if v not in ("true", "false")]
        if wrong:
            raise ValueError(f"{', '.join(wrong)}: must be true or false")
        text = [values[f"GITEA_UPDATE_{k}"] for k in cls.KEYS[:-3]]
        return cls(*text, flags["AUTO"] == "true", values["GITEA_UPDATE_WINDOW"], flags["REBOOT"] == "true")


def load_update_config(path: str | None = None) -> UpdateConfig:
    return UpdateConfig.from_env(parse_env(Path(path or os.environ.get("GITEA_UPDATE_CONFIG", CONFIG_FILE)).read_text()))


# --- pure helpers (unit-tested) ----------------------------------------------------------------

def changed_images(current: dict[str, str], target: dict[str, str]) -> dict[str, tuple[str | None, str]]:
    """service -> (image now, image wanted) for every service whose image differs."""
    return {s: (current.get(s), image) for s, image in sorted(target.items()) if current.get(s) != image}


def reports_version(output: str, image: str) -> bool:
    """Does `gitea --version` ("Gitea version 1.27.4 built with ...") name the image tag's version?
    Compared by the numbers: 1.27.4-rootless is 1.27.4; a stand-in's 1.27.4+standin is too."""
    wanted = parse_version(parse_reference(image).tag)
    words = output.split()
    if wanted is None or "version" not in words or words.index("version") + 1 >= len(words):
        return False
    reported = parse_version(words[words.index("version") + 1])
    return reported is not None and reported[0] == wanted[0]


def with_tag(image: str, tag: str) -> str:
    """The same reference (registry and repository as written) with another tag."""
    return f"{image.rsplit(':', 1)[0]}:{tag}"


def newer_in_line(image: str, tags: list[str], depth: int, failed: set[str]) -> str | None:
    """The newest image of `image`'s line among `tags`, leaving out images that failed here; None
    when `image` is already the newest."""
    current = parse_reference(image).tag
    usable = [t for t in tags if with_tag(image, t) not in failed]
    best = newest_in_line(usable, current, depth)
    return None if best == current else with_tag(image, best)


def with_images(text: str, changes: dict[str, tuple[str, str]]) -> str:
    """The compose file's text with each service's image replaced: the deploy renders every image
    as `image: "<ref>"` (tojson), so each old reference must occur exactly once."""
    for service, (old, new) in changes.items():
        needle = f"image: {json.dumps(old)}"
        if text.count(needle) != 1:
            raise JobError(f"the compose file names {old} {text.count(needle)} times, not once: cannot move {service}")
        text = text.replace(needle, f"image: {json.dumps(new)}")
    return text


def render_metrics(state: dict) -> str:
    """gitea_update.prom: when updates ran and how the last one ended; GiteaUpdateFailed fires on it."""
    last = state.get("last") or {}
    samples = [
        ("gitea_deploy_update_last_run_timestamp_seconds", "When the last image update ended.",
         last.get("ended", 0)),
        ("gitea_deploy_update_last_success_timestamp_seconds", "When an image update last succeeded.",
         state.get("last_success", 0)),
        ("gitea_deploy_update_last_failed", "1: the last image update failed (the stack is on the images "
         "it had before; see gitea-update status).", 1 if last.get("outcome", "ok") != "ok" else 0),
        ("gitea_deploy_update_last_duration_seconds", "How long the last image update took, rollback included.",
         last.get("seconds", 0)),
    ]
    lines = []
    for name, help_text, value in samples:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {float(value):.3f}"]
    return "\n".join(lines) + "\n"


# --- state -------------------------------------------------------------------------------------

def load_state(ucfg: UpdateConfig) -> dict:
    try:
        return json.loads(Path(ucfg.state_file).read_text())
    except FileNotFoundError:
        return {}


def save_state(ucfg: UpdateConfig, state: dict) -> None:
    # durable: a pending update must still be known after a power cut
    atomic_write(ucfg.state_file, json.dumps(state, indent=2, sort_keys=True) + "\n", 0o640, durable=True)
    atomic_write(ucfg.metrics_file, render_metrics(state))


def finished(ucfg: UpdateConfig, state: dict, outcome: str, started: float, **details) -> None:
    """Record how an update ended (ok, refused, rolled-back, rollback-failed) and end its pending entry."""
    pending = state.pop("pending", {}) or {}
    now = time.time()
    state["last"] = {"outcome": outcome, "ended": now, "seconds": now - started,
                     "from": pending.get("from"), "to": pending.get("to"), **details}
    if outcome == "ok":
        state["last_success"] = now
    elif outcome in ("rolled-back", "rollback-failed"):
        # The deploy does not try these images again until the operator says so (forget-failure).
        for service, (_, image) in changed_images(pending.get("from") or {}, pending.get("to") or {}).items():
            state.setdefault("failed", {})[image] = {"service": service, "at": now, "why": details.get("why", "")}
    save_state(ucfg, state)


# --- the stack ---------------------------------------------------------------------------------

def images(path: str) -> dict[str, str]:
    """service -> image of a compose file, as Compose reads it."""
    cp = run(["docker", "compose", "-f", path, "config", "--format", "json"], timeout=60)
    if cp.returncode != 0:
        raise JobError(f"docker compose config of {path} failed: {last_lines(cp.stderr)}")
    return {name: svc["image"] for name, svc in json.loads(cp.stdout)["services"].items()}


def schema_version(stack: Stack) -> str | None:
    """Gitea's migration number (its `version` table); None when it cannot be read."""
    try:
        return stack.psql("SELECT version FROM version WHERE id = 1") or None
    except JobError as error:
        log.warning("Gitea's schema version could not be read (%s): a rollback will restore the database", error)
        return None


def newest_snapshot(cfg, tag: str, since: float) -> dict:
    """The snapshot this update's pre-update backup made: the newest with the tag, after `since`."""
    found = []
    for repo in cfg.repositories:
        try:
            found += [{**s, "repository": repo.name} for s in Restic(cfg, repo).snapshots() if tag in (s.get("tags") or [])]
        except JobError as error:
            log.warning("%s repository: %s", repo.name, error)
    if not found:
        raise JobError(f"the pre-update backup left no {tag} snapshot")
    snap = max(found, key=lambda s: s["time"])
    return {"id": snap["id"], "repository": snap["repository"], "time": snap["time"]}


def check_problem(cfg, ucfg: UpdateConfig, stack: Stack, target: dict[str, str]) -> str | None:
    """None when the stack on `target` works as users see it, else what is wrong."""
    curl = ["curl", "-fsS", "--max-time", "10", "--resolve", f"{ucfg.domain}:443:127.0.0.1",
            *(["--cacert", ucfg.ca_file] if ucfg.ca_file else []), f"https://{ucfg.domain}/api/healthz"]
    deadline, why = time.monotonic() + CHECK_TIMEOUT, ""
    while True:
        cp = run(curl, timeout=15)
        if cp.returncode == 0 and '"pass"' in cp.stdout:
            break
        why = last_lines(cp.stderr or cp.stdout, 2)
        if time.monotonic() > deadline:
            return f"https://{ucfg.domain}/api/healthz through nginx did not pass within {CHECK_TIMEOUT} s: {why}"
        time.sleep(2)
    version = stack.compose("exec", "-T", "gitea", "gitea", "--version")
    if version.returncode != 0 or not reports_version(version.stdout, target["gitea"]):
        return f"Gitea reports {last_lines(version.stdout + version.stderr, 1)!r}, not the version of {target['gitea']}"
    doctor = stack.compose("exec", "-T", "gitea", "gitea", "doctor", "check", timeout=600)
    if doctor.returncode != 0:
        return f"gitea doctor check failed (exit {doctor.returncode}): {last_lines(doctor.stdout + doctor.stderr, 4)}"
    return None


def up(stack: Stack) -> subprocess.CompletedProcess:
    return stack.compose("up", "-d", "--wait", "--wait-timeout", str(WAIT_SECONDS), "--remove-orphans",
                         timeout=WAIT_SECONDS + PULL_TIMEOUT)


def remove_images(keep: set[str], candidates: set[str]) -> None:
    """The images an update left unused (the failed one, or the one before the previous): no
    orphans beyond the previous image. An image a container still uses is refused by Docker."""
    for image in sorted(candidates - keep):
        cp = run(["docker", "image", "rm", image], timeout=120)
        log.info("image %s %s", image, "removed" if cp.returncode == 0 else f"kept: {last_lines(cp.stderr, 1)}")


# --- the sequence ------------------------------------------------------------------------------

def apply(cfg, ucfg: UpdateConfig) -> int:
    stack, state, started = Stack(cfg), load_state(ucfg), time.time()
    pending = state.get("pending")
    if pending and Path(ucfg.previous_compose).exists():
        log.warning("an update to %s was interrupted after its new compose file went live: finishing it",
                    pending["to"])
        # The deploy that started this run wrote its wish again; once this one is finished the next
        # deploy asks afresh, so no stale wish is left beside the live file.
        Path(ucfg.next_compose).unlink(missing_ok=True)
        return finish(cfg, ucfg, stack, state, started)
    if not Path(ucfg.next_compose).exists():
        raise JobError(f"nothing to apply: {ucfg.next_compose} does not exist (the deploy writes it)")
    current, target = images(cfg.compose_file), images(ucfg.next_compose)
    changes = changed_images(current, target)
    log.info("update: %s", "; ".join(f"{s} {old} -> {new}" for s, (old, new) in changes.items()) or "no image changes")
    state["pending"] = {"from": current, "to": target, "started": started}
    save_state(ucfg, state)

    if backup(cfg, [PRE_UPDATE_TAG]) != 0:
        Path(ucfg.next_compose).unlink()
        finished(ucfg, state, "refused", started, why="the pre-update backup failed")
        raise JobError("the pre-update backup failed (see above): nothing was changed, the stack runs as before")
    state["pending"]["snapshot"] = newest_snapshot(cfg, PRE_UPDATE_TAG, started)
    state["pending"]["schema"] = schema_version(stack)
    save_state(ucfg, state)

    pull = run(["docker", "compose", "-f", ucfg.next_compose, "pull", "--quiet"], timeout=PULL_TIMEOUT)
    if pull.returncode != 0:
        Path(ucfg.next_compose).unlink()
        finished(ucfg, state, "refused", started, why=f"pull failed: {last_lines(pull.stderr, 2)}")
        raise JobError(f"pulling the new images failed, nothing was changed: {last_lines(pull.stderr)}")

    shutil.copy2(cfg.compose_file, ucfg.previous_compose)
    os.replace(ucfg.next_compose, cfg.compose_file)
    return finish(cfg, ucfg, stack, state, started)


def finish(cfg, ucfg: UpdateConfig, stack: Stack, state: dict, started: float) -> int:
    """The new file is live: up, checks; kept when they pass, rolled back when not."""
    pending = state["pending"]
    cp = up(stack)
    problem = (f"docker compose up did not get healthy: {last_lines(cp.stderr)}" if cp.returncode != 0
               else check_problem(cfg, ucfg, stack, pending["to"]))
    if problem is None:
        Path(ucfg.previous_compose).unlink(missing_ok=True)
        finished(ucfg, state, "ok", started)
        remove_images(set(pending["to"].values()) | set(pending["from"].values()),
                      set(state.pop("previous_images", []) or []))
        state["previous_images"] = sorted(set(pending["from"].values()) - set(pending["to"].values()))
        save_state(ucfg, state)
        log.info("update done in %.0f s: %s", time.time() - started, pending["to"])
        return 0
    log.error("update to %s failed: %s. Rolling back to %s", pending["to"], problem, pending["from"])
    return roll_back(cfg, ucfg, stack, state, started, problem)


def roll_back(cfg, ucfg: UpdateConfig, stack: Stack, state: dict, started: float, problem: str) -> int:
    pending = state["pending"]
    os.replace(ucfg.previous_compose, cfg.compose_file)
    restored = None
    gitea_changed = "gitea" in changed_images(pending["from"], pending["to"])
    schema = schema_version(stack)
    if gitea_changed and (schema is None or schema != pending.get("schema")):
        snap = pending["snapshot"]
        log.warning("Gitea's schema version moved (%s -> %s): restoring the pre-update snapshot %s",
                    pending.get("schema"), schema, snap["id"][:8])
        try:
            restore(cfg, snap["id"], snap["repository"], force=True)
            restored = snap["id"]
        except JobError as error:
            finished(ucfg, state, "rollback-failed", started, why=f"{problem}; the restore failed: {error}")
            raise JobError(f"update failed ({problem}) and restoring snapshot {snap['id'][:8]} failed: {error}. "
                           "docs/runbooks/upgrade.md, 'Rollback by hand'") from error
    cp = up(stack)
    if cp.returncode != 0 or not stack.healthy():
        finished(ucfg, state, "rollback-failed", started, why=problem)
        raise JobError(f"update failed ({problem}) and the stack did not come back healthy on the previous images: "
                       f"{last_lines(cp.stderr)}. docs/runbooks/upgrade.md, 'Rollback by hand'")
    finished(ucfg, state, "rolled-back", started, why=problem, restored_snapshot=restored)
    remove_images(set(pending["from"].values()), set(pending["to"].values()))
    raise JobError(f"update to {pending['to']} failed ({problem}); the stack is back on {pending['from']}"
                   + (f" with the database and files of snapshot {restored[:8]}" if restored else "")
                   + " and healthy. These images are not tried again until `gitea-update forget-failure`")


def auto(cfg, ucfg: UpdateConfig, now: datetime.datetime | None = None) -> int:
    """The timer's run: in the window, move each service to the newest release of its line (if
    any), through apply(); then reboot if the OS asks for it and the inventory allows it."""
    if not ucfg.auto:
        log.info("automatic updates are off (auto_update): nothing done")
        return 0
    if not is_open(parse_window(ucfg.window), now or datetime.datetime.now()):
        log.info("outside the update window %s: nothing done", ucfg.window)
        return 0
    state = load_state(ucfg)
    failed, changes, unanswered = set(state.get("failed") or {}), {}, []
    for service, image in sorted(images(cfg.compose_file).items()):
        if service not in LINES:
            continue
        try:
            newer = newer_in_line(image, list_tags(parse_reference(image)), LINES[service], failed)
        except (RegistryError, ValueError) as error:
            log.error("%s: cannot look for a newer %s: %s", service, image, error)
            unanswered.append(service)
            continue
        if newer:
            changes[service] = (image, newer)
    if changes:
        atomic_write(ucfg.next_compose, with_images(Path(cfg.compose_file).read_text(), changes))
        apply(cfg, ucfg)  # raises when the update failed (rolled back): no reboot then
    else:
        log.info("every image is the newest of its line")
    if ucfg.reboot and Path(REBOOT_REQUIRED).exists():
        log.warning("%s exists: rebooting in the update window (the stack starts with the engine)", REBOOT_REQUIRED)
        run(["systemctl", "reboot"], timeout=60)
    return 1 if unanswered else 0


# --- command line ------------------------------------------------------------------------------

def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="gitea-update", description="Move the stack to the images the deploy wants, safely (backup first, "
        "health-checked, rolled back on failure). The deploy runs `apply`; operators read `status`.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    sub.add_parser("apply", help="run the update sequence for the compose file the deploy wrote")
    sub.add_parser("auto", help="in the update window: the newest patch release of each image's line (the timer)")
    sub.add_parser("status", help="the last outcome, a pending update and the images that failed")
    sub.add_parser("forget-failure", help="let the deploy try images that failed before again")
    args = parser.parse_args(argv)

    def body() -> int:
        cfg, ucfg = load_config(), load_update_config()
        if args.command == "status":
            print(json.dumps(load_state(ucfg), indent=2, sort_keys=True))
            return 0
        handle_signals()
        with job_lock(cfg.lock_file, f"gitea-update {args.command}"):
            if args.command == "forget-failure":
                state = load_state(ucfg)
                print("forgotten: " + (", ".join(state.pop("failed", {})) or "nothing"))
                save_state(ucfg, state)
                return 0
            return auto(cfg, ucfg) if args.command == "auto" else apply(cfg, ucfg)

    return guarded("gitea-update", body)

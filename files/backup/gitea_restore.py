"""Restore a backup onto this host: the database, Gitea's data and configuration, its secrets.

Installed by tasks/backup.py as /usr/local/lib/gitea-deploy/gitea_restore.py; run as
`gitea-restore [--snapshot latest|ID] [--from auto|local|s3] [--password-file F] [--force]` on a
host the deploy has made (the stack exists, the repository is reachable), or from the control
machine with `pyinfra INVENTORY restore.py --limit HOST` (docs/runbooks/restore.md).

What it replaces it first moves aside (files) or dumps (database) under
<data_root>/backup/pre-restore-<time>/, so even a forced restore over the wrong host is undoable.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

from gitea_backup import (
    Config,
    JobError,
    Restic,
    Stack,
    atomic_write,
    guarded,
    job_lock,
    load_config,
    load_state,
    log,
    pick_snapshot,
    s3_reachable,
    save_state,
    ssm_password,
)

# Secrets that belong to this host, not to the backup: db_password is the one this host's database
# cluster was initialised with (pg_dump does not carry role passwords); restic_password is what
# just opened the repository; monitor_db_password is the PostgreSQL exporter's role's on this
# cluster (tasks/monitoring.py), and grafana_admin_password the one this host's Grafana was first
# started with (its database is not in the backup). A restored host's next deploy then changes nothing.
HOST_SECRETS = {"db_password", "restic_password", "monitor_db_password", "grafana_admin_password"}
# Moved into place whole (the rootless image keeps repositories, LFS, attachments, avatars and
# jwt/ under /var/lib/gitea, and app.ini under /etc/gitea).
RESTORED_DIRS = ("gitea/data", "gitea/config")
# Where the rootless image keeps repositories, relative to the data root (image contract).
REPOSITORIES_DIR = "gitea/data/git/repositories"


def holds_data(cfg: Config, stack: Stack) -> list[str]:
    """What on this host a restore would overwrite: repositories or users besides the first admin."""
    found = []
    repos_dir = Path(cfg.data_root) / REPOSITORIES_DIR
    on_disk = sorted(str(p.relative_to(repos_dir)) for p in repos_dir.glob("*/*.git")) if repos_dir.is_dir() else []
    if on_disk:
        found.append(f"{len(on_disk)} repositories on disk (e.g. {on_disk[0]})")
    try:
        repos, users = stack.psql(
            "SELECT (SELECT count(*) FROM repository), "
            f"(SELECT count(*) FROM \"user\" WHERE lower_name <> lower('{cfg.admin_user}'))").split("|")
    except (JobError, ValueError) as error:
        found.append(f"cannot tell what the database holds ({error})")
        return found
    if int(repos):
        found.append(f"{repos} repositories in the database")
    if int(users):
        found.append(f"{users} users besides {cfg.admin_user}")
    return found


def choose(cfg: Config, source: str, wanted: str, password_file: str | None) -> tuple[Restic, dict]:
    """The repository and snapshot to restore: `auto` takes the newest match across repositories,
    the local one first on a tie (faster; after a host loss only S3 has any)."""
    names = [r.name for r in cfg.repositories] if source == "auto" else [source]
    found = []
    for name in names:
        restic = Restic(cfg, cfg.repository(name), password_file)
        try:
            if restic.repo.remote and (why := s3_reachable(restic.repo)):
                raise JobError(why)  # before restic, which retries a dead endpoint for 15 minutes
            snap = pick_snapshot(restic.snapshots(), wanted)
        except JobError as error:
            if source != "auto":
                raise
            log.warning("%s repository skipped: %s", name, error)
            continue
        if snap:
            found.append((restic, snap))
    if not found:
        raise JobError(f"no snapshot {wanted!r} of {cfg.snapshot_host} in {', '.join(names)}")
    return max(found, key=lambda pair: pair[1]["time"]) if wanted == "latest" else found[0]


def ensure_password(cfg: Config, password_file: str | None) -> str | None:
    """The operator's file, else this host's, else fetched from SSM (how a replacement host opens
    its predecessor's backups; the deploy normally fetched it already)."""
    if password_file or Path(cfg.password_file).exists():
        return password_file
    value = ssm_password(cfg) if cfg.ssm_parameter else None
    if value is None:
        raise JobError(f"no restic password: {cfg.password_file} is missing and SSM has none; "
                       "pass --password-file")
    atomic_write(cfg.password_file, value, 0o600)
    log.info("restic password fetched from SSM %s", cfg.ssm_parameter)
    return None


def restore(cfg: Config, wanted: str = "latest", source: str = "auto", password_file: str | None = None,
            force: bool = False) -> int:
    started = time.monotonic()
    state = load_state(cfg)
    state["restore_last_run"] = time.time()
    state["restore_exit_status"] = 1
    save_state(cfg, state)
    stack = Stack(cfg)

    present = holds_data(cfg, stack)
    if present and not force:
        raise JobError("this host already holds data: " + "; ".join(present)
                       + ". Restoring would replace it; run again with --force if that is what you want")
    password_file = ensure_password(cfg, password_file)
    restic, snap = choose(cfg, source, wanted, password_file)
    log.info("restoring snapshot %s of %s (%s, %s, tags %s) from the %s repository", snap["short_id"],
             snap["hostname"], snap["time"][:19], snap.get("username", "?"), ",".join(snap.get("tags") or []),
             restic.repo.name)

    stamp = time.strftime("%Y%m%d-%H%M%S")
    backup_dir = Path(cfg.staging_dir)
    staging = backup_dir / f"restore-{stamp}"
    aside = backup_dir / f"pre-restore-{stamp}"
    staging.mkdir(parents=True, mode=0o700)
    aside.mkdir(parents=True, mode=0o700)
    # Into a staging directory on the data volume first: nothing is touched until the whole snapshot
    # is here, and moving it into place is then a rename.
    restic("restore", snap["id"], "--target", str(staging), timeout=12 * 3600)
    inside = staging / cfg.data_root.lstrip("/")
    dump = staging / cfg.dump_file.lstrip("/")
    missing = [str(p) for p in (dump, *(inside / d for d in RESTORED_DIRS), inside / "secrets") if not p.exists()]
    if missing:
        raise JobError(f"snapshot {snap['short_id']} lacks {', '.join(missing)}: not a gitea-backup snapshot?")
    log.info("snapshot restored to %s in %.0f s", staging, time.monotonic() - started)

    stack.checked("stop", "gitea")
    try:
        if present:
            stack.dump(str(aside / "gitea.pgdump"))
        with open(dump, "rb") as handle:
            # --clean --if-exists: drop what the dump recreates, whatever this database holds now;
            # one transaction: a failed restore leaves the database as it was.
            cp = stack.db(["pg_restore", "-U", cfg.db_user, "-d", cfg.db_name, "--clean", "--if-exists",
                           "--no-owner", "--single-transaction"], stdin=handle, timeout=12 * 3600)
        if cp.returncode != 0:
            raise JobError(f"pg_restore failed (exit {cp.returncode}), the database is unchanged: "
                           f"{cp.stderr[-800:]}")
    except JobError:
        stack.compose("start", "gitea")  # nothing was replaced yet: back to how it was
        raise
    log.info("database restored")

    for rel in RESTORED_DIRS:
        target = Path(cfg.data_root) / rel
        (aside / rel).parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            os.rename(target, aside / rel)
        os.rename(inside / rel, target)
    secrets = Path(cfg.data_root) / "secrets"
    (aside / "secrets").mkdir(mode=0o700)
    for item in sorted((inside / "secrets").iterdir()):
        if item.name in HOST_SECRETS:
            continue
        if (secrets / item.name).exists():
            shutil.copy2(secrets / item.name, aside / "secrets" / item.name)
        os.replace(item, secrets / item.name)  # owner and mode as the snapshot has them
    shutil.rmtree(staging)
    log.info("files in place (what they replaced is in %s)", aside)

    stack.checked("up", "-d", "gitea")
    stack.wait_healthy()
    hooks = stack.checked("exec", "-T", "gitea", "gitea", "admin", "regenerate", "hooks")
    log.info("hooks: %s", hooks.stdout.strip().splitlines()[-1] if hooks.stdout.strip() else "regenerated")
    if not stack.healthy():
        raise JobError("Gitea is not healthy after the restore")
    seconds = time.monotonic() - started
    state.update(restore_exit_status=0, restore_duration=seconds)
    save_state(cfg, state)
    log.info("restore of %s done in %.0f s: Gitea is healthy", snap["short_id"], seconds)
    print(f"restored snapshot {snap['id']} ({snap['time'][:19]}) from {restic.repo.name} in {seconds:.0f} s; "
          f"replaced files and database are kept in {aside}")
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="gitea-restore", description="Restore a gitea-backup snapshot onto this host "
        "(database, Gitea's data and configuration, secrets), then start Gitea and verify it.")
    parser.add_argument("--snapshot", default="latest", help="latest (default) or a snapshot ID (gitea-backup "
                        "restic s3 snapshots)")
    parser.add_argument("--from", dest="source", default="auto", choices=["auto", "local", "s3"],
                        help="repository; auto: the newest snapshot found in any")
    parser.add_argument("--password-file", help="restic password, if neither this host nor SSM has it")
    parser.add_argument("--force", action="store_true", help="restore even though this host holds data "
                        "(what is replaced is kept under <data_root>/backup/pre-restore-*)")
    args = parser.parse_args(argv)

    def body() -> int:
        cfg = load_config()
        with job_lock(cfg.lock_file, "gitea-restore"):
            return restore(cfg, args.snapshot, args.source, args.password_file, args.force)

    return guarded("gitea-restore", body)

"""gitea-pg-upgrade: the operator-run PostgreSQL major upgrade of the stack's database, a dump and
restore that ends in one of two ways: the new major with the same data, or the old cluster back
exactly as it was (its directory is moved aside, never written to).

An image change cannot do this: PostgreSQL N+1 does not open N's data directory, so the deploy
refuses a postgres_image of another major (tasks/updates.py) and points here. Installed by
tasks/updates.py beside gitea_update.py; docs/runbooks/upgrade.md ("PostgreSQL major") is the
operator's side: this, then the inventory's pin set to the same image.

The sequence, under the backup job's lock (no backup, restore or update meanwhile):
  refuse unless the image pulls, is a higher major than PG_VERSION on disk, and the database is
  the stack's own (RDS upgrades itself); a pre-pg-upgrade backup (a failure stops here);
  Gitea stopped; roles (pg_dumpall --roles-only, passwords and pg_monitor membership included),
  row counts and pg_dump -Fc from the old cluster; the plan written (GITEA_UPDATE_PG_UPGRADE_FILE);
  old db container removed, <data_root>/postgres moved aside to postgres.<old>-<time>, the compose
  file kept as compose.pg<old>-<time>.yaml and rewritten to the new image; an empty directory
  (999:999, 0700) that the image's entrypoint initialises; roles, then pg_restore in one
  transaction; row counts compared, ANALYZE, PG_VERSION checked; the plan removed; Gitea started.

Any failure or signal after the plan is written puts the old directory and compose file back and
starts the old cluster (`rollback` does the same for a run that died with the host). While the plan
exists the deploy refuses to run, so a scheduled redeploy cannot start Gitea on a half-made cluster.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import time
from pathlib import Path

from gitea_backup import (
    COMPOSE_TIMEOUT,
    DATA_TIMEOUT,
    JobError,
    Stack,
    Terminated,
    atomic_write,
    backup,
    deferred_signals,
    fsync_directory,
    guarded,
    handle_signals,
    job_lock,
    last_lines,
    load_config,
    log,
    run,
)
from gitea_update import PULL_TIMEOUT, WAIT_SECONDS, images, load_update_config, with_images

PRE_UPGRADE_TAG = "pre-pg-upgrade"
POSTGRES_UID = 999  # the official image's postgres user (lab/images/postgres keeps it)

# Exact row counts of every table in Gitea's schema, in one statement (psql -tA: "table|count").
ROW_COUNTS = (
    "SELECT table_name || '|' || (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM "
    "public.%I', table_name), false, true, '')))[1]::text FROM information_schema.tables "
    "WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY table_name"
)


# --- pure helpers (unit-tested) ----------------------------------------------------------------

def server_major(version_output: str) -> int:
    """`postgres --version` ("postgres (PostgreSQL) 17.6 (Debian 17.6-1)") -> 17."""
    found = re.search(r"\(PostgreSQL\) (\d+)", version_output)
    if not found:
        raise JobError(f"not a PostgreSQL server version: {version_output.strip()!r}")
    return int(found.group(1))


def _role_name(token: str) -> str:
    return token[1:-1].replace('""', '"') if token.startswith('"') else token


def roles_script(dump: str, existing: set[str]) -> str:
    """pg_dumpall --roles-only's SQL without CREATE ROLE for the roles the new cluster already has
    (its entrypoint made the superuser): the ALTER ROLE that follows still sets their attributes and
    password, so the script runs with ON_ERROR_STOP and any other error stops the upgrade."""
    kept = []
    for line in dump.splitlines():
        create = re.fullmatch(r'CREATE ROLE ("(?:[^"]|"")+"|\w+);', line.strip())
        if create and _role_name(create.group(1)) in existing:
            continue
        kept.append(line)
    return "\n".join(kept) + "\n"


def parse_counts(output: str) -> dict[str, int]:
    return {name: int(count) for name, _, count in (line.rpartition("|") for line in output.splitlines() if line)}


def count_differences(before: dict[str, int], after: dict[str, int]) -> list[str]:
    return [f"{t}: {before.get(t, 'missing')} before, {after.get(t, 'missing')} after"
            for t in sorted(set(before) | set(after)) if before.get(t) != after.get(t)]


def upgrade_plan(data_root: str, staging_dir: str, old: int, new: int, image: str, old_image: str,
                 stamp: str) -> dict:
    """Where everything goes: what the rollback reads back (the plan file), so it needs nothing else."""
    return {"old_major": old, "new_major": new, "image": image, "old_image": old_image,
            "data": f"{data_root}/postgres", "moved": f"{data_root}/postgres.{old}-{stamp}",
            "compose_kept": f"{data_root}/compose.pg{old}-{stamp}.yaml",
            "work": f"{staging_dir}/pg-upgrade-{stamp}"}


# --- the host ----------------------------------------------------------------------------------

def on_disk_major(data_dir: str) -> int:
    try:
        return int(Path(data_dir, "PG_VERSION").read_text().strip())
    except (OSError, ValueError) as error:
        raise JobError(f"{data_dir}/PG_VERSION cannot be read ({error}): no cluster to upgrade") from None


def image_major(image: str) -> int:
    pull = run(["docker", "pull", "--quiet", image], timeout=PULL_TIMEOUT)
    if pull.returncode != 0:
        raise JobError(f"pulling {image} failed, nothing was changed: {last_lines(pull.stderr)}")
    cp = run(["docker", "run", "--rm", "--network", "none", "--entrypoint", "postgres", image, "--version"],
             timeout=120)
    if cp.returncode != 0:
        raise JobError(f"{image} runs no `postgres --version`: {last_lines(cp.stderr)}")
    return server_major(cp.stdout)


def checked_db(stack: Stack, argv: list[str], what: str, **kw) -> str:
    cp = stack.db(argv, **kw)
    if cp.returncode != 0:
        raise JobError(f"{what} failed (exit {cp.returncode}): {last_lines(cp.stderr)}")
    return cp.stdout


def row_counts(stack: Stack) -> dict[str, int]:
    return parse_counts(stack.psql(ROW_COUNTS))


def up_db(stack: Stack) -> None:
    stack.checked("up", "-d", "--wait", "--wait-timeout", str(WAIT_SECONDS), "db", timeout=WAIT_SECONDS + 60)


def put_back(cfg, stack: Stack, plan: dict, plan_file: str) -> None:
    """The old cluster and compose file back, the old db container up; idempotent, so `rollback`
    finishes one that a crash interrupted at any step."""
    stack.compose("rm", "--stop", "--force", "db", timeout=COMPOSE_TIMEOUT)
    data, moved = Path(plan["data"]), Path(plan["moved"])
    if moved.exists():
        if data.exists():
            shutil.rmtree(data)  # the new, half-made cluster: the old one holds all the data
        os.rename(moved, data)
        fsync_directory(str(data.parent))
    if Path(plan["compose_kept"]).exists():
        os.replace(plan["compose_kept"], cfg.compose_file)
    up_db(stack)
    shutil.rmtree(plan["work"], ignore_errors=True)
    Path(plan_file).unlink(missing_ok=True)
    log.warning("PostgreSQL %s is back on %s with its data as it was", plan["old_major"], plan["old_image"])


def swap(cfg, stack: Stack, plan: dict, plan_file: str) -> None:
    """Gitea is stopped: dump the old cluster, make the new one from it and check it."""
    work = Path(plan["work"])
    work.mkdir(mode=0o700, parents=True)
    user = cfg.db_user
    roles = checked_db(stack, ["pg_dumpall", "-U", user, "--roles-only"], "pg_dumpall --roles-only")
    before = row_counts(stack)
    size = stack.dump(str(work / "gitea.dump"))
    log.info("PostgreSQL %s dumped: %d tables, %d rows, %d bytes", plan["old_major"], len(before),
             sum(before.values()), size)

    atomic_write(plan_file, json.dumps(plan, indent=2, sort_keys=True) + "\n", 0o600, durable=True)
    # From here on a failure puts the old cluster back (put_back).
    compose_text = Path(cfg.compose_file).read_text()
    shutil.copy2(cfg.compose_file, plan["compose_kept"])
    stack.checked("rm", "--stop", "--force", "db", timeout=COMPOSE_TIMEOUT)
    os.rename(plan["data"], plan["moved"])
    os.mkdir(plan["data"], 0o700)
    os.chown(plan["data"], POSTGRES_UID, POSTGRES_UID)
    fsync_directory(str(Path(plan["data"]).parent))
    mode = os.stat(plan["compose_kept"]).st_mode & 0o777
    atomic_write(cfg.compose_file, with_images(compose_text, {"db": (plan["old_image"], plan["image"])}), mode,
                 durable=True)
    up_db(stack)  # the image's entrypoint initialises the empty directory: the user, database, password

    existing = set(stack.psql("SELECT rolname FROM pg_roles").split())
    (work / "roles.sql").write_text(roles_script(roles, existing))
    with open(work / "roles.sql") as script:
        checked_db(stack, ["psql", "-U", user, "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-q", "-f", "-"],
                   "the roles' script", stdin=script)
    with open(work / "gitea.dump", "rb") as dump:
        checked_db(stack, ["pg_restore", "-U", user, "-d", cfg.db_name, "--single-transaction", "--exit-on-error",
                           "--no-owner"], "pg_restore", stdin=dump, timeout=DATA_TIMEOUT)
    wrong = count_differences(before, row_counts(stack))
    if wrong:
        raise JobError(f"the restored database differs from the dump's: {'; '.join(wrong[:5])}")
    stack.psql("ANALYZE")  # a restore leaves the planner without statistics
    if on_disk_major(plan["data"]) != plan["new_major"]:
        raise JobError(f"{plan['data']}/PG_VERSION is not {plan['new_major']} after the restore")


def upgrade(cfg, ucfg, image: str) -> int:
    if cfg.db_endpoint:
        raise JobError("the database is external (RDS): its major upgrade is the provider's (the instance's "
                       "engine version), not this program's")
    if Path(ucfg.pg_upgrade_file).exists():
        raise JobError(f"an earlier upgrade did not end ({ucfg.pg_upgrade_file}): `gitea-pg-upgrade rollback` "
                       "puts the old cluster back first")
    stack = Stack(cfg)
    old, old_image = on_disk_major(f"{cfg.data_root}/postgres"), images(cfg.compose_file)["db"]
    new = image_major(image)
    if new <= old:
        raise JobError(f"{image} is PostgreSQL {new} and the data is PostgreSQL {old}: only a higher major is an "
                       "upgrade; nothing was changed")
    if backup(cfg, [PRE_UPGRADE_TAG]) != 0:
        raise JobError("the pre-pg-upgrade backup failed (see above): nothing was changed")
    started = time.monotonic()
    plan = upgrade_plan(cfg.data_root, cfg.staging_dir, old, new, image, old_image, time.strftime("%Y%m%dT%H%M%S"))
    log.info("upgrading PostgreSQL %d (%s) to %d (%s); Gitea is stopped meanwhile", old, old_image, new, image)
    gitea_was_running = stack.gitea_running()
    stack.checked("stop", "gitea")
    try:
        try:
            swap(cfg, stack, plan, ucfg.pg_upgrade_file)
        except BaseException as error:  # any failure or signal: the old cluster back
            with deferred_signals():
                log.error("the upgrade failed (%s): putting PostgreSQL %d back", error, old)
                if Path(ucfg.pg_upgrade_file).exists():
                    put_back(cfg, stack, plan, ucfg.pg_upgrade_file)
                shutil.rmtree(plan["work"], ignore_errors=True)
            if isinstance(error, Terminated):
                raise
            raise JobError(f"upgrading to PostgreSQL {new} failed: {error}. PostgreSQL {old} runs as before, "
                           "nothing was lost") from error
        Path(ucfg.pg_upgrade_file).unlink()  # done: the new cluster is Gitea's from here on
        shutil.rmtree(plan["work"], ignore_errors=True)
    finally:
        if gitea_was_running:
            with deferred_signals():
                stack.start_gitea()
                stack.wait_healthy()
    log.info("PostgreSQL %d -> %d done in %.0f s (Gitea was stopped meanwhile). The old cluster stays in %s and "
             "the old compose file in %s until you remove them; now pin postgres_image=%s in the inventory",
             old, new, time.monotonic() - started, plan["moved"], plan["compose_kept"], image)
    return 0


def rollback(cfg, ucfg) -> int:
    try:
        plan = json.loads(Path(ucfg.pg_upgrade_file).read_text())
    except FileNotFoundError:
        log.info("no PostgreSQL major upgrade is under way: nothing to roll back")
        return 0
    with deferred_signals():
        put_back(cfg, Stack(cfg), plan, ucfg.pg_upgrade_file)
        Stack(cfg).start_gitea()
        Stack(cfg).wait_healthy()
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="gitea-pg-upgrade", description="Upgrade the stack's PostgreSQL to a new major by dump and restore; "
        "on any failure the old cluster is back as it was (docs/runbooks/upgrade.md, 'PostgreSQL major').")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    sub.add_parser("upgrade", help="move the data to IMAGE, a higher PostgreSQL major").add_argument("image")
    sub.add_parser("rollback", help="put the old cluster back after an upgrade that died with the host")
    args = parser.parse_args(argv)

    def body() -> int:
        cfg, ucfg = load_config(), load_update_config()
        handle_signals()
        with job_lock(cfg.lock_file, f"gitea-pg-upgrade {args.command}"):
            return upgrade(cfg, ucfg, args.image) if args.command == "upgrade" else rollback(cfg, ucfg)

    return guarded("gitea-pg-upgrade", body)

"""The stand-in's database version, shaped like Gitea's (models/migrations/migrations.go): one row in
the "version" table holds the number of the last migration applied; `gitea web` migrates upward to
its own number at start and refuses, with Gitea's message, a database a newer release migrated.

Numbers: a minor line 1.M ends at 10 * (300 + M) (1.27 -> 3270, 1.28 -> 3280); every patch release
of a line shares it, as Gitea's patch releases do not migrate. The fault "unhealthy-after-migrate"
adds one migration past its line (1.27.5 -> 3271), so the previous patch release (3270) refuses the
database afterwards, as it would after a real release that migrated and then broke. The tens leave
room for such steps between lines. No psycopg2 here: unit tests import this module without it.
"""

import re

LINE_BASE = 300              # 1.M -> LINE_BASE + M, times LINE_STEP
LINE_STEP = 10
FAULTS = {"", "unhealthy-after-migrate"}
FAULT_STEPS = {"unhealthy-after-migrate": 1}  # migrations a faulty build adds past its line

_VERSION = re.compile(r"^1\.(\d+)\.(\d+)(?:[-+].*)?$")


class SchemaError(Exception):
    """Start-up refused: logged as Gitea's `Migration Error: ...` (log.Fatal, exit 1)."""


def line_version(version):
    """Database version of the minor line of `version` ("1.27.3+standin" -> 3270)."""
    m = _VERSION.match(version or "")
    if not m:
        raise SchemaError(f"cannot derive a database version from GITEA_STANDIN_VERSION={version!r}"
                          " (expected 1.MINOR.PATCH[+suffix])")
    return (LINE_BASE + int(m[1])) * LINE_STEP


def check_fault(fault):
    if fault not in FAULTS:
        raise SchemaError(f"unknown GITEA_STANDIN_FAULT={fault!r} (known: {', '.join(sorted(FAULTS - {''}))})")
    return fault


def expected_version(version, fault=""):
    """The database version this build migrates to (Gitea's maxDBVer)."""
    return line_version(version) + FAULT_STEPS.get(check_fault(fault), 0)


def newer_database_message(current, expected):
    """Gitea's downgrade refusal (models/migrations Migrate, production wording: RUN_MODE=prod)."""
    return (f"Your database (migration version: {current}) is for a newer Gitea, you can not use the newer"
            f" database for this old Gitea release ({expected}).\nGitea will exit to keep your database safe"
            " and unchanged. Please use the correct Gitea release, do not change the migration version"
            " manually (incorrect manual operation may lose data).")


def plan(current, expected):
    """What start-up does with a database at `current` (None: no version row yet, a fresh one):
    "fresh" (record `expected`), "current" (nothing), "migrate" (record `expected`); raises
    SchemaError for a database a newer release migrated."""
    if current is None:
        return "fresh"
    if current > expected:
        raise SchemaError(newer_database_message(current, expected))
    return "current" if current == expected else "migrate"

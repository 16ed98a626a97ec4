"""The Gitea stand-in's database version (lab/images/gitea-standin, schema.py and store.migrate):
numbers derived from the release, upward migration, Gitea's refusal of a newer database, and the
update ladder the lab registry holds (lab/config.py STANDIN_GITEA_TAGS). No Docker, no PostgreSQL:
store.migrate runs against a fake connection that keeps the version table in memory."""

import importlib
import sys
import types
from pathlib import Path

import pytest

from lab import config, registry

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "lab/images/gitea-standin/rootfs/usr/local/lib/gitea-standin"))
from gitea_standin import schema  # noqa: E402


@pytest.fixture
def store(monkeypatch):
    """gitea_standin.store with a stub psycopg2 (the venv has none; migrate only needs the names)."""
    pg = types.ModuleType("psycopg2")
    pg.errors = types.ModuleType("psycopg2.errors")
    pg.Error = type("Error", (Exception,), {})
    monkeypatch.setitem(sys.modules, "psycopg2", pg)
    monkeypatch.setitem(sys.modules, "psycopg2.errors", pg.errors)
    monkeypatch.delitem(sys.modules, "gitea_standin.store", raising=False)
    return importlib.import_module("gitea_standin.store")


class FakeDB:
    """A connection whose cursor answers the version-table statements of store.migrate."""

    def __init__(self, version=None):
        self.rows = [] if version is None else [[1, version]]
        self.statements = []
        self.committed = self.rolled_back = False

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        self.committed, self.rolled_back = exc_type is None, exc_type is not None

    def cursor(self):
        return self

    def close(self):
        pass

    def execute(self, sql, params=()):
        self.statements.append(sql)
        if sql.startswith('INSERT INTO "version"'):
            self.rows.append([len(self.rows) + 1, params[0]])
        elif sql.startswith('UPDATE "version"'):
            next(r for r in self.rows if r[0] == params[1])[1] = params[0]

    def fetchone(self):
        return tuple(self.rows[0]) if self.rows and "FROM \"version\"" in self.statements[-1] else None

    @property
    def version(self):
        return self.rows[0][1] if self.rows else None

    def wrote(self):
        """Statements that change anything but the version table's existence."""
        return [s for s in self.statements if s.startswith(("INSERT", "UPDATE")) or 'EXISTS "user"' in s]


def expected(tag):
    args = registry.gitea_build_args(tag)
    return schema.expected_version(args["GITEA_STANDIN_VERSION"], args.get("GITEA_STANDIN_FAULT", ""))


# --- numbers ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("version", "number"), [
    ("1.27.3+standin", 3270), ("1.27.4+standin", 3270), ("1.27.0", 3270), ("1.28.0+standin", 3280),
    ("1.9.1", 3090), ("1.28.0-rc1", 3280),
])
def test_patch_releases_share_their_line_number(version, number):
    assert schema.line_version(version) == number
    assert schema.expected_version(version) == number


def test_the_fault_adds_one_migration_past_its_line():
    assert schema.expected_version("1.27.5+standin", "unhealthy-after-migrate") == 3271
    assert schema.line_version("1.28.0") > 3271, "the next line still migrates past the faulty step"


@pytest.mark.parametrize("version", ["", "dev", "2.0.0", "1.27", "v1.27.3"])
def test_no_number_for_an_unknown_version(version):
    with pytest.raises(schema.SchemaError, match="GITEA_STANDIN_VERSION"):
        schema.expected_version(version)


def test_unknown_fault_is_refused():
    with pytest.raises(schema.SchemaError, match="unknown GITEA_STANDIN_FAULT='unhealthy'"):
        schema.expected_version("1.27.3", "unhealthy")


def test_refusal_is_giteas_production_message():
    with pytest.raises(schema.SchemaError) as e:
        schema.plan(3271, 3270)
    assert str(e.value) == (
        "Your database (migration version: 3271) is for a newer Gitea, you can not use the newer database"
        " for this old Gitea release (3270).\nGitea will exit to keep your database safe and unchanged."
        " Please use the correct Gitea release, do not change the migration version manually (incorrect"
        " manual operation may lose data).")


# --- store.migrate ------------------------------------------------------------------------------------

def test_fresh_database_records_the_build_number(store):
    db = FakeDB()
    assert store.migrate(db, 3270) == ("fresh", None)
    assert db.version == 3270 and db.committed


def test_same_line_changes_nothing(store):
    db = FakeDB(3270)
    assert store.migrate(db, 3270) == ("current", 3270)
    assert db.version == 3270 and not any(s.startswith(("INSERT", "UPDATE")) for s in db.statements)


@pytest.mark.parametrize("found", [1, 3270, 3271])  # 1: the stand-in's number before versions existed
def test_older_database_is_migrated_upward(store, found):
    db = FakeDB(found)
    assert store.migrate(db, 3280) == ("migrate", found)
    assert db.version == 3280 and len(db.rows) == 1


def test_newer_database_is_refused_and_left_alone(store):
    db = FakeDB(3271)
    with pytest.raises(schema.SchemaError, match=r"migration version: 3271\) is for a newer Gitea"):
        store.migrate(db, 3270)
    assert db.version == 3271 and db.rolled_back
    assert db.wrote() == [], "nothing but the version table may be touched before the refusal"


# --- the ladder the lab registry holds (issue 12) -----------------------------------------------------

def test_registry_ladder_n_n1_n2_and_next_line(store):
    tags = list(config.STANDIN_GITEA_TAGS)
    assert tags[0] == config.STANDIN_GITEA_DEFAULT == config.STANDIN_IMAGES["gitea"][2]
    n, n1, n2, nxt = tags
    db = FakeDB()
    assert store.migrate(db, expected(n))[0] == "fresh"           # N on an empty database
    assert store.migrate(db, expected(n1))[0] == "current"        # N+1: same schema
    assert store.migrate(db, expected(n))[0] == "current"         # and back: patch releases share it
    assert config.STANDIN_GITEA_TAGS[n2] == {"GITEA_STANDIN_FAULT": "unhealthy-after-migrate"}
    assert store.migrate(db, expected(n2))[0] == "migrate"        # N+2 migrates (then fails healthz)
    with pytest.raises(schema.SchemaError):                       # N+1 without a restore: refused
        store.migrate(db, expected(n1))
    assert store.migrate(db, expected(nxt))[0] == "migrate"       # the next line migrates past N+2
    with pytest.raises(schema.SchemaError):
        store.migrate(db, expected(n2))

"""Command line of the stand-in, shaped like Gitea 1.27's (urfave/cli v3): same command names,
flags, output lines and exit codes for the commands the deploy and the backup/restore work use.
Command output goes to stdout, so do log lines (Gitea's CLI console logger writes to stdout);
only `Command error: ...` goes to stderr."""

import os
import sys
from contextlib import closing

from . import VERSION, config, log, store
from .ini import IniFile, parse_bool

GLOBAL_FLAGS = {
    "config": "str", "c": "config",
    "work-path": "str", "w": "work-path",
    "custom-path": "str", "C": "custom-path",
    "help": "bool", "h": "help",
    "version": "bool", "v": "version",
}

# command path -> flags (type, or the long name an alias stands for)
COMMANDS = {
    ("web",): {"port": "str", "p": "port", "pid": "str", "P": "pid", "quiet": "bool", "q": "quiet",
               "verbose": "bool"},
    ("admin", "user", "create"): {"name": "str", "username": "str", "password": "str", "email": "str",
                                  "admin": "bool", "random-password": "bool", "must-change-password": "bool",
                                  "random-password-length": "int", "access-token": "bool",
                                  "restricted": "bool", "fullname": "str"},
    ("admin", "user", "list"): {"admin": "bool"},
    ("admin", "user", "change-password"): {"username": "str", "u": "username", "password": "str",
                                           "p": "password", "must-change-password": "bool"},
    ("admin", "regenerate", "hooks"): {},
    ("admin", "sendmail"): {"title": "str", "content": "str", "force": "bool", "f": "force"},
    ("generate", "secret"): {},
    ("hook",): {},
    ("config", "edit-ini"): {"in-place": "bool", "apply-env": "bool", "out": "str", "config-keep-keys": "str"},
    ("doctor", "check"): {"all": "bool", "fix": "bool"},
}
GROUPS = {(), ("admin",), ("admin", "user"), ("admin", "regenerate"), ("generate",), ("config",), ("doctor",)}
NOT_IMPLEMENTED = {"dump", "restore-repo", "dump-repo", "migrate", "serv", "keys", "manager",
                   "embedded", "migrate-storage", "actions", "cert", "docs"}


class UsageError(Exception):
    pass


def parse(argv):
    """-> (command path, flags, positional args)."""
    path, flags, args = [], {}, []
    i = 0
    while i < len(argv):
        tok = argv[i]
        i += 1
        if tok == "--":
            args += argv[i:]
            break
        if tok.startswith("-") and len(tok) > 1 and not args:
            name, eq, value = tok.lstrip("-").partition("=")
            spec = {**GLOBAL_FLAGS, **COMMANDS.get(tuple(path), {})}
            if name not in spec:
                raise UsageError(f"flag provided but not defined: -{name}")
            kind = spec[name]
            if kind not in ("str", "int", "bool"):
                name, kind = kind, spec[kind]
            if kind == "bool":
                flags[name] = parse_bool(value, True) if eq else True
            else:
                if not eq:
                    if i >= len(argv):
                        raise UsageError(f"flag needs an argument: -{name}")
                    value = argv[i]
                    i += 1
                if kind == "int":
                    try:
                        value = int(value)
                    except ValueError:
                        raise UsageError(f'invalid value "{value}" for flag -{name}') from None
                flags[name] = value
            continue
        candidate = tuple(path) + (tok,)
        if not args and (candidate in COMMANDS or candidate in GROUPS):
            path.append(tok)
        else:
            args.append(tok)
    return tuple(path), flags, args


def config_path(flags):
    return flags.get("config") or os.environ.get("GITEA_APP_INI") or os.path.join(
        flags.get("work-path") or os.environ.get("GITEA_WORK_DIR") or "/var/lib/gitea", "custom/conf/app.ini")


def load_settings(flags):
    s = config.load(config_path(flags), flags.get("work-path"))
    return s


def open_db(settings):
    """Gitea's CLI initDB: needs an installed instance, connects, does NOT migrate."""
    settings.require_installed()
    try:
        conn = store.connect(settings)
    except Exception as e:  # psycopg2.Error and friends
        detail = " ".join(str(e).split())
        raise store.StoreError(
            f'unable to initialize the database using the configuration in "{settings.path}". Error: {detail}'
        ) from None
    store.check_schema(conn)
    return conn


def tabwrite(rows, minwidth=5, padding=1):
    """Go's text/tabwriter (minwidth 5, padding 1, spaces) as Gitea's `admin user list` uses it:
    every cell but the last of a line is padded to its column's width."""
    ncols = max(len(r) for r in rows) - 1
    widths = [minwidth] * ncols
    for r in rows:
        for c in range(min(ncols, len(r) - 1)):
            widths[c] = max(widths[c], len(r[c]) + padding)
    out = []
    for r in rows:
        cells = [r[c].ljust(widths[c]) for c in range(len(r) - 1)] + [r[-1]]
        out.append("".join(cells))
    return "\n".join(out) + "\n"


def _b(v):
    return "true" if v else "false"


# ---------------------------------------------------------------- commands


def cmd_web(flags, args):
    from . import web

    s = load_settings(flags)
    port = int(flags["port"]) if flags.get("port") else None
    if flags.get("pid"):
        with open(flags["pid"], "w") as f:
            f.write(str(os.getpid()))
    web.serve(s, port)


def cmd_user_create(flags, args):
    if "email" not in flags:
        raise store.StoreError("email is not set")
    if "name" in flags and "username" in flags:
        raise store.StoreError("Cannot set both --name and --username flags")
    if "name" not in flags and "username" not in flags:
        raise store.StoreError("One of --name or --username flags must be set")
    if "password" in flags and "random-password" in flags:
        raise store.StoreError("cannot set both -random-password and -password flags")
    if flags.get("access-token"):
        raise store.StoreError("--access-token is not implemented by the Gitea stand-in")
    username = flags.get("username") or flags.get("name")
    if "username" not in flags:
        print("--name flag is deprecated. Use --username instead.", file=sys.stderr)
    s = load_settings(flags)
    with closing(open_db(s)) as conn:
        if "password" in flags:
            password = flags["password"]
        elif flags.get("random-password"):
            password = store.random_password(flags.get("random-password-length", 12))
            print(f"generated random password is '{password}'", flush=True)
        else:
            raise store.StoreError("must set either password or random-password flag")
        # Gitea: true by default, except for the very first user; the flag overrides both
        must_change = store.count_users(conn) > 0
        if "must-change-password" in flags:
            must_change = flags["must-change-password"]
        try:
            store.create_user(conn, username, flags["email"], password, flags.get("admin", False), must_change)
        except store.StoreError as e:
            raise store.StoreError(f"CreateUser: {e}") from None
    print(f"New user '{username}' has been successfully created!")


def cmd_user_list(flags, args):
    s = load_settings(flags)
    with closing(open_db(s)) as conn:
        users = store.list_users(conn)
    if flags.get("admin"):
        rows = [["ID", "Username", "Email", "IsActive"]]
        rows += [[str(u["id"]), u["name"], u["email"], _b(u["is_active"])] for u in users if u["is_admin"]]
    else:
        rows = [["ID", "Username", "Email", "IsActive", "IsAdmin", "2FA"]]
        rows += [[str(u["id"]), u["name"], u["email"], _b(u["is_active"]), _b(u["is_admin"]), "false"] for u in users]
    sys.stdout.write(tabwrite(rows))


def cmd_user_change_password(flags, args):
    for required in ("username", "password"):
        if required not in flags:
            raise store.StoreError(f'Required flag "{required}" not set')
    s = load_settings(flags)
    with closing(open_db(s)) as conn:
        if len(flags["password"]) < s.min_password_length:
            raise store.StoreError(
                f"password is not long enough, needs to be at least {s.min_password_length} characters")
        if store.get_user(conn, flags["username"]) is None:
            raise store.StoreError(f"user does not exist [uid: 0, name: {flags['username']}]")
        name = store.change_password(conn, flags["username"], flags["password"],
                                     flags.get("must-change-password", True))
    print(f"{name}'s password has been successfully updated!")


def cmd_regenerate_hooks(flags, args):
    s = load_settings(flags)
    with closing(open_db(s)) as conn:
        repos = store.all_repos(conn)
    # like Gitea's SyncRepositoryHooks: nothing printed on success
    for r in repos:
        path = store.repo_path(s, r["owner_name"], r["name"])
        if not os.path.isdir(path):
            log.warn(f"repository {r['owner_name']}/{r['name']} has no directory at {path}: skipped", "repository")
            continue
        store.write_hooks(s, path)


def cmd_doctor_check(flags, args):
    """`gitea doctor check` with its default checks, as far as the stand-in has them: the
    configuration loads, the database answers and is at this release's version (Gitea's
    check-db-version: "[E] ..." and exit 1 otherwise), the repository root exists. Output shaped
    like Gitea's; an update's post-checks run it (files/updates/gitea_update.py)."""
    from . import FAULT, schema

    s = load_settings(flags)
    print("[1] Check paths and basic configuration")
    print(f' - [I] Configuration File Path:    "{s.path}"')
    print("[2] Check Database Version")
    with closing(open_db(s)) as conn:
        found = store.database_version(conn)
    expected = schema.expected_version(VERSION, FAULT)
    if found != expected:
        print(f" - [E] Expected database version: {expected}, but found: {found}. Please run `gitea migrate`")
        print("ERROR: some checks failed (checks: 2)")
        return 1
    print(f" - [I] database version {found} is what this release expects")
    print("All done (checks: 2).")
    return 0


def cmd_generate_secret(flags, args):
    generators = {
        "SECRET_KEY": config.new_secret_key,
        "INTERNAL_TOKEN": config.new_internal_token,
        "JWT_SECRET": config.new_jwt_secret,
        "LFS_JWT_SECRET": config.new_jwt_secret,
    }
    if not args or args[0] not in generators:
        raise store.StoreError("usage: gitea generate secret INTERNAL_TOKEN|JWT_SECRET|LFS_JWT_SECRET|SECRET_KEY")
    # like Gitea: no trailing newline unless stdout is a terminal (scripts capture it as is)
    sys.stdout.write(generators[args[0]]())
    if sys.stdout.isatty():
        sys.stdout.write("\n")


def cmd_hook(flags, args):
    """Hooks are how Gitea checks pushes; the stand-in has no push path, so only the gate remains:
    pushes not made through Gitea are rejected (ONLY_ALLOW_PUSH_IF_GITEA_ENVIRONMENT_SET)."""
    if not args or args[0] not in ("pre-receive", "update", "post-receive", "proc-receive"):
        raise store.StoreError("usage: gitea hook pre-receive|update|post-receive")
    s = load_settings(flags)
    if not sys.stdin.isatty():
        sys.stdin.read()
    gate = parse_bool(s.ini.get("security", "ONLY_ALLOW_PUSH_IF_GITEA_ENVIRONMENT_SET"), True)
    if args[0] in ("pre-receive", "update") and gate and not os.environ.get("SSH_ORIGINAL_COMMAND"):
        print("Gitea stand-in: Rejecting changes as Gitea environment not set.", file=sys.stderr)
        print("If you are pushing over SSH you must push with a key managed by Gitea "
              "or set your environment appropriately.", file=sys.stderr)
        raise SystemExit(1)


def cmd_edit_ini(flags, args):
    """`gitea config edit-ini` (cmd/config.go): --in-place or --out, --apply-env, --config-keep-keys.
    Prints nothing; writes only when the output differs from the input file or anything changed."""
    if "config" not in flags:
        raise store.StoreError("flag is required but not set: --config")
    src = flags["config"]
    try:
        ini = IniFile.load(src)
    except OSError as e:
        raise store.StoreError(f'failed to load config file "{src}": {e}') from None
    out = flags.get("out") or ""
    if not out:
        if not flags.get("in-place"):
            raise store.StoreError("either --in-place or --out must be specified")
        out = src
    write = out != src
    if flags.get("config-keep-keys"):
        raise store.StoreError("--config-keep-keys is not implemented by the Gitea stand-in")
    if flags.get("apply-env") and config.apply_env(ini, os.environ):
        write = True
    if write:
        ini.save_to(out)


def _confirm():
    """Gitea's confirm(): one word from stdin, y/yes or n/no (any case), anything else an error."""
    line = sys.stdin.readline()
    if not line:
        raise store.StoreError("EOF")
    word = line.strip()
    if not word:
        raise store.StoreError("unexpected newline")
    if word.lower() in ("y", "yes"):
        return True
    if word.lower() in ("n", "no"):
        return False
    raise store.StoreError(f"{word} isn't a correct confirmation string")


def cmd_sendmail(flags, args):
    """`gitea admin sendmail --title T [--content C] [--force]` (cmd/admin.go, cmd/mailer.go): like
    Gitea it does not send anything itself: it asks the RUNNING web process (private API
    POST /api/internal/mail/send, modules/private/mail.go) to mail every active user."""
    if "title" not in flags:
        raise store.StoreError('Required flag "title" not set')
    s = load_settings(flags)
    s.require_installed()
    subject, body = flags["title"], flags.get("content", "")
    if not flags.get("force"):
        if not body:
            sys.stdout.write("warning: Content is empty")
        sys.stdout.write("Proceed with sending email? [Y/n] ")
        sys.stdout.flush()
        if not _confirm():
            print("The mail was not sent")
            return
    from . import mail

    print(f"Sent {mail.request_send(s, subject, body)} email(s) to all users")


HANDLERS = {
    ("web",): cmd_web,
    ("admin", "user", "create"): cmd_user_create,
    ("admin", "user", "list"): cmd_user_list,
    ("admin", "user", "change-password"): cmd_user_change_password,
    ("admin", "regenerate", "hooks"): cmd_regenerate_hooks,
    ("generate", "secret"): cmd_generate_secret,
    ("hook",): cmd_hook,
    ("admin", "sendmail"): cmd_sendmail,
    ("doctor", "check"): cmd_doctor_check,
    ("config", "edit-ini"): cmd_edit_ini,
}


def main(argv):
    try:
        path, flags, args = parse(argv)
    except UsageError as e:
        print(f"Incorrect Usage: {e}", file=sys.stderr)
        return 1
    if flags.get("version") and not path:
        print(f"Gitea version {VERSION} (lab stand-in, not Gitea) built with Python")
        return 0
    if not path and args and args[0] in NOT_IMPLEMENTED:
        print(f"Command error: `gitea {args[0]}` is not implemented by the Gitea stand-in (lab only)",
              file=sys.stderr)
        return 1
    if not path and not args:
        path = ("web",)  # Gitea's default command
    handler = HANDLERS.get(path)
    if handler is None or flags.get("help"):
        print("Gitea stand-in (lab only), NOT Gitea. Commands: web; admin user create|list|change-password;"
              " admin regenerate hooks; admin sendmail; generate secret KEY; hook NAME; config edit-ini;"
              " doctor check",
              file=sys.stderr)
        return 0 if flags.get("help") else 1
    try:
        status = handler(flags, args)  # None: done (the commands that only fail by raising)
    except store.StoreError as e:
        print(f"Command error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return status or 0

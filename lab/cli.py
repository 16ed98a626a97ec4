"""`python -m lab <command>`. Adding a command is one function:

    @command("name", "one-line help", arg("host"), arg("--flag", action="store_true"))
    def cmd_name(ns) -> int | None: ...

`converge` runs the production path against lab hosts (lab/converge.py).
"""

import argparse
import os
import sys

from lab import LabError

COMMANDS: dict[str, tuple] = {}


def arg(*flags, **kw):
    return flags, kw


def command(name: str, help: str, *args):
    def deco(fn):
        COMMANDS[name] = (fn, help, args)
        return fn
    return deco


def _api():
    from lab import api
    return api


@command("engine", "start dockerd if `docker info` does not answer (idempotent)")
def cmd_engine(ns):
    print(f"docker engine: {_api().engine()}")


@command("images", "build or reuse every lab image; push the stand-ins to the lab registry",
         arg("--mode", choices=["standin", "upstream"], help="default: $LAB_IMAGES or standin"))
def cmd_images(ns):
    _api().images(ns.mode)


@command("up", "create (or reuse) lab hosts and their sidecars; write .lab/state.json",
         arg("names", nargs="+", metavar="NAME"),
         arg("--admin-port", type=int, default=2222, help="the admin sshd port inside the host (2222)"),
         arg("--mode", choices=["standin", "upstream"], help="images mode; default: $LAB_IMAGES or standin"),
         arg("--aws", metavar="SHARED", help="relay 127.0.0.1:5050 to the shared moto SHARED (same AWS for "
                                             "every host given it; it outlives them) instead of a private one"))
def cmd_up(ns):
    _api().up(ns.names, admin_port=ns.admin_port, mode=ns.mode, aws=ns.aws)


@command("aws-down", "remove a shared emulated AWS (`up --aws SHARED`) and everything stored in it",
         arg("name", metavar="SHARED"))
def cmd_aws_down(ns):
    _api().aws_down(ns.name)


@command("reboot", "reboot a host (docker restart) and bring its sidecars back", arg("name", metavar="NAME"))
def cmd_reboot(ns):
    _api().reboot(ns.name)


@command("down", "remove hosts, their sidecars, volumes and state entries",
         arg("names", nargs="*", metavar="NAME"),
         arg("--all", action="store_true", help="every lab host, the registry, the network and .lab state"))
def cmd_down(ns):
    if not ns.names and not ns.all:
        raise LabError("down: name hosts, or --all")
    _api().down(ns.names, all=ns.all)


@command("status", "table of lab hosts, ports, container and sidecar states")
def cmd_status(ns):
    rows = _api().status()
    if not rows:
        print("no lab hosts")
        return
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    print("  ".join(c.upper().ljust(widths[c]) for c in cols))
    for r in rows:
        print("  ".join(str(r[c]).ljust(widths[c]) for c in cols))


@command("ca", "print pebble's current root CA (PEM) as seen inside the host", arg("name", metavar="NAME"))
def cmd_ca(ns):
    sys.stdout.write(_api().pebble_root(ns.name))


@command("ssh", "ssh into a host as admin (the production path)",
         arg("name", metavar="NAME"), arg("cmd", nargs=argparse.REMAINDER))
def cmd_ssh(ns):
    argv = _api().ssh_command(ns.name, *ns.cmd)
    sys.stdout.flush()
    os.execvp(argv[0], argv)


@command("converge", "deploy to lab hosts and run the host checks (lab/converge.py)",
         arg("names", nargs="+", metavar="NAME"))
def cmd_converge(ns):
    from lab.converge import converge

    rc = 0
    for name in ns.names:
        rc = converge(name) or rc
    return rc


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lab", description="gitea-deploy's local lab (docs/lab.md)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (fn, help, args) in COMMANDS.items():
        sp = sub.add_parser(name, help=help, description=help)
        for flags, kw in args:
            sp.add_argument(*flags, **kw)
        sp.set_defaults(func=fn)
    return p


def main(argv=None) -> int:
    ns = parser().parse_args(argv)
    try:
        return ns.func(ns) or 0
    except LabError as e:
        print(f"lab {ns.command}: ERROR: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"lab {ns.command}: interrupted", file=sys.stderr)
        return 130

"""The lab tool's pure parts: content hashing of images, the state file merge, known_hosts, the CLI
registry. No Docker."""

import json
import os
import random

import pytest

from lab import LabError, cli, config, images, state
from lab.hosts import pick_ports, ports_of
from lab.secrets import key_fingerprint

# --- content tags ---------------------------------------------------------------------------------

def _tree(tmp_path, files):
    for rel, content in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(content)
    return tmp_path


def test_dir_hash_is_stable_and_12_hex(tmp_path):
    d = _tree(tmp_path, {"Dockerfile": "ARG BASE\nFROM ${BASE}\n", "conf/a.yml": "a: 1\n"})
    h = images.dir_hash(d, "gitea-deploy-lab/base:abc")
    assert h == images.dir_hash(d, "gitea-deploy-lab/base:abc")
    assert len(h) == 12 and int(h, 16) >= 0


def test_dir_hash_changes_with_content_name_mode_and_base(tmp_path):
    d = _tree(tmp_path, {"Dockerfile": "ARG BASE\nFROM ${BASE}\n", "run": "#!/bin/sh\n"})
    h0 = images.dir_hash(d, "b:1")
    assert images.dir_hash(d, "b:2") != h0, "a new base must give a new tag"
    os.chmod(d / "run", 0o755)
    h1 = images.dir_hash(d, "b:1")
    assert h1 != h0, "the exec bit changes what COPY produces"
    (d / "run").write_text("#!/bin/sh\necho\n")
    h2 = images.dir_hash(d, "b:1")
    assert h2 != h1
    (d / "run").rename(d / "run2")
    assert images.dir_hash(d, "b:1") != h2


def test_dir_hash_ignores_caches(tmp_path):
    d = _tree(tmp_path, {"Dockerfile": "x"})
    h = images.dir_hash(d, "b:1")
    _tree(tmp_path, {"__pycache__/m.pyc": "junk", "x.pyc": "junk", "Dockerfile~": "old"})
    assert images.dir_hash(d, "b:1") == h


def test_dir_hash_covers_build_args_and_keeps_argless_tags(tmp_path):
    d = _tree(tmp_path, {"Dockerfile": "x"})
    h = images.dir_hash(d, "b:1")
    assert images.dir_hash(d, "b:1", {}) == h, "images built without args keep their tags"
    one = images.dir_hash(d, "b:1", {"V": "1.27.3+standin"})
    assert len({h, one, images.dir_hash(d, "b:1", {"V": "1.27.4+standin"}),
                images.dir_hash(d, "b:1", {"V": "1.27.3+standin", "F": "x"})}) == 4
    assert images.dir_hash(d, "b:1", {"A": "1", "B": "2"}) == images.dir_hash(d, "b:1", {"B": "2", "A": "1"})


def test_recipe_hash_follows_the_recipe():
    r = dict(images.BASE_RECIPE)
    assert images.recipe_hash(r) == images.recipe_hash(dict(reversed(list(r.items()))))
    r2 = dict(r, include=r["include"] + ["vim"])
    assert images.recipe_hash(r2) != images.recipe_hash(r)
    assert images.base_tag() == f"gitea-deploy-lab/base:{images.recipe_hash(images.BASE_RECIPE)}"


def test_an_older_suites_base_is_lean_and_named_for_it():
    """The major-upgrade drill's PostgreSQL 15 is bookworm's package: its own base, no systemd."""
    old = images.BASE_RECIPES["bookworm"]
    assert (old["suite"], old["include"], old["import_changes"]) == ("bookworm", ["ca-certificates"], [])
    assert images.base_tag("bookworm") == f"gitea-deploy-lab/base-bookworm:{images.recipe_hash(old)}"
    assert images.tag_for("postgres", {"PG_MAJOR": "15"}, "bookworm") != images.tag_for("postgres", {"PG_MAJOR": "15"})
    with pytest.raises(LabError, match="no lab base for Debian 'sid'"):
        images.base_tag("sid")


def test_base_recipe_is_the_documented_one():
    r = images.BASE_RECIPE
    assert (r["suite"], r["variant"]) == ("trixie", "minbase")
    assert set(r["include"]) == {"systemd", "systemd-sysv", "openssh-server", "python3", "sudo",
                                 "ca-certificates", "iproute2", "curl"}
    assert r["import_changes"] == ['CMD ["/sbin/init"]']


def test_every_lab_image_starts_from_the_base():
    for d in images.IMAGES_DIR.glob("*/Dockerfile"):
        lines = [ln.strip() for ln in d.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
        assert lines[:2] == ["ARG BASE", "FROM ${BASE}"], d


def test_tag_for_unknown_image_says_so():
    with pytest.raises(Exception, match="does not exist"):
        images.tag_for("no-such-image")


# --- state ----------------------------------------------------------------------------------------

H1 = state.host_entry(ip="172.20.0.2", admin_ssh_port=2222, ssh_port=20001, https_port=20002, http_port=20003,
                      git_ssh_port=20004, known_hosts=".lab/hosts/gitea-lab-1/known_hosts")
H2 = dict(H1, ip="172.20.0.3", known_hosts=".lab/hosts/gitea-lab-2/known_hosts")
TOP = {"ssh_key": ".lab/id_ed25519", "acme_ca_bundle": ".lab/pebble/listener.pem", "images_mode": "standin",
       "images": {"gitea": "127.0.0.1:5000/lab/gitea-standin:1.27.3", "postgres": "127.0.0.1:5000/lab/postgres:17"}}


def test_merge_into_nothing_gives_the_contract_shape():
    s = state.merge(None, top=TOP, hosts={"gitea-lab-1": H1})
    assert list(s) == ["ssh_key", "acme_ca_bundle", "images_mode", "images", "hosts"]
    assert s["hosts"]["gitea-lab-1"] == H1
    assert set(H1) == set(state.HOST_KEYS)
    assert all(isinstance(H1[k], int) for k in ("ssh_port", "https_port", "http_port", "git_ssh_port"))


def test_merge_keeps_other_hosts_and_replaces_entries_whole():
    old = state.merge(None, top=TOP, hosts={"gitea-lab-1": dict(H1, extra="stale"), "gitea-lab-2": H2})
    new = state.merge(old, hosts={"gitea-lab-1": H1})
    assert new["hosts"] == {"gitea-lab-1": H1, "gitea-lab-2": H2}
    assert new["images"] == TOP["images"]


def test_merge_removes_and_does_not_mutate():
    old = state.merge(None, top=TOP, hosts={"gitea-lab-1": H1, "gitea-lab-2": H2})
    snapshot = json.dumps(old)
    new = state.merge(old, remove=["gitea-lab-1", "never-existed"])
    assert list(new["hosts"]) == ["gitea-lab-2"]
    assert json.dumps(old) == snapshot


def test_merge_top_level_overwrites_and_keeps_unknown_keys():
    old = dict(state.merge(None, top=TOP), note="kept")
    new = state.merge(old, top=dict(TOP, images_mode="upstream", images={"gitea": "g", "postgres": "p"}))
    assert new["images_mode"] == "upstream" and new["images"] == {"gitea": "g", "postgres": "p"}
    assert new["note"] == "kept"


def test_save_load_roundtrip_and_missing_file(tmp_path):
    p = tmp_path / "state.json"
    assert state.load(p) == {"hosts": {}}
    s = state.merge(None, top=TOP, hosts={"gitea-lab-1": H1})
    state.save(s, p)
    assert state.load(p) == s
    assert not list(tmp_path.glob(".*.tmp")), "atomic write leaves no temp file"
    p.write_text("{broken")
    with pytest.raises(ValueError, match="down --all"):
        state.load(p)


def test_known_hosts_lines():
    keys = ["ssh-ed25519 AAAAC3Nza root@h", "ecdsa-sha2-nistp256 AAAAE2Vj root@h", ""]
    lines = state.known_hosts_lines(keys, [("127.0.0.1", 20001), ("172.20.0.2", 22)])
    assert lines == ["[127.0.0.1]:20001 ssh-ed25519 AAAAC3Nza", "[127.0.0.1]:20001 ecdsa-sha2-nistp256 AAAAE2Vj",
                     "172.20.0.2 ssh-ed25519 AAAAC3Nza", "172.20.0.2 ecdsa-sha2-nistp256 AAAAE2Vj"]


# --- ports, keys, CLI ------------------------------------------------------------------------------

def test_pick_ports_distinct_in_range_and_avoiding_reserved():
    lo, hi = config.HOST_PORT_RANGE
    reserved = set(range(lo, lo + 5000))
    ports = pick_ports(4, reserved, rng=random.Random(1))
    assert len(set(ports)) == 4
    assert all(lo + 5000 <= p < hi for p in ports)


def test_ports_of_reads_only_loopback_bindings():
    info = {"Name": "/h", "HostConfig": {"PortBindings": {
        "2222/tcp": [{"HostIp": "127.0.0.1", "HostPort": "20001"}],
        "443/tcp": [{"HostIp": "127.0.0.1", "HostPort": "20002"}],
        "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "20003"}],
        "22/tcp": [{"HostIp": "127.0.0.1", "HostPort": "20004"}]}}}
    assert ports_of(info, 2222) == {"ssh_port": 20001, "https_port": 20002, "http_port": 20003,
                                    "git_ssh_port": 20004}
    info["HostConfig"]["PortBindings"]["22/tcp"] = [{"HostIp": "", "HostPort": "20004"}]
    with pytest.raises(Exception, match="not published on 127.0.0.1"):
        ports_of(info, 2222)


def test_key_fingerprint_is_stable():
    line = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHh0ZXN0a2V5dGVzdGtleXRlc3RrZXl0ZXN0a2V5 c"
    assert key_fingerprint(line) == key_fingerprint(line.rsplit(" ", 1)[0])
    assert len(key_fingerprint(line)) == 16


def test_cli_has_every_command():
    cli.parser()
    assert {"engine", "images", "up", "reboot", "down", "status", "ca", "ssh", "converge"} <= set(cli.COMMANDS)


def test_adding_a_command_is_one_function(monkeypatch):
    monkeypatch.setattr(cli, "COMMANDS", dict(cli.COMMANDS))
    seen = []

    @cli.command("hello", "say hello", cli.arg("who"))
    def _hello(ns):
        seen.append(ns.who)
        return 3

    assert cli.main(["hello", "lab"]) == 3 and seen == ["lab"]


def test_images_mode_from_env(monkeypatch):
    from lab import LabError, api

    monkeypatch.delenv("LAB_IMAGES", raising=False)
    assert api.images_mode() == "standin"
    monkeypatch.setenv("LAB_IMAGES", "upstream")
    assert api.images_mode() == "upstream"
    monkeypatch.setenv("LAB_IMAGES", "latest")
    with pytest.raises(LabError):
        api.images_mode()


def test_upstream_references_are_pinned():
    from lab import registry

    for ref in registry.references("upstream").values():
        assert ":" in ref.rsplit("/", 1)[-1] and not ref.endswith(":latest")
    assert registry.references("standin") == TOP["images"]


def test_gitea_standin_update_tags_in_the_registry():
    """Issue 12's ladder: each STANDIN_GITEA_TAGS entry is one build of lab/images/gitea-standin,
    pushed as lab/gitea-standin:<tag> with its version (and fault) as build args; deploys keep 1.27.3."""
    from lab import registry

    assert list(config.STANDIN_GITEA_TAGS) == ["1.27.3", "1.27.4", "1.27.5", "1.28.0"]
    assert registry.references("standin")["gitea"] == "127.0.0.1:5000/lab/gitea-standin:1.27.3"
    assert registry.gitea_references() == {t: f"127.0.0.1:5000/lab/gitea-standin:{t}"
                                           for t in ("1.27.3", "1.27.4", "1.27.5", "1.28.0")}
    gitea = [(args, repo, tag) for name, args, repo, tag, _ in registry.standin_builds() if name == "gitea-standin"]
    assert gitea == [
        ({"GITEA_STANDIN_VERSION": "1.27.3+standin"}, "lab/gitea-standin", "1.27.3"),
        ({"GITEA_STANDIN_VERSION": "1.27.4+standin"}, "lab/gitea-standin", "1.27.4"),
        ({"GITEA_STANDIN_VERSION": "1.27.5+standin", "GITEA_STANDIN_FAULT": "unhealthy-after-migrate"},
         "lab/gitea-standin", "1.27.5"),
        ({"GITEA_STANDIN_VERSION": "1.28.0+standin"}, "lab/gitea-standin", "1.28.0"),
    ]
    postgres = [b for b in registry.standin_builds() if b[0] == "postgres"]
    assert postgres == [("postgres", {"PG_MAJOR": "17"}, "lab/postgres", "17", "trixie"),
                        ("postgres", {"PG_MAJOR": "15"}, "lab/postgres", "15", "bookworm")]
    assert registry.references("standin")["postgres"] == registry.postgres_reference("17")
    assert len({images.tag_for("gitea-standin", args) for args, _, _ in gitea}) == 4, "one local image per tag"
    dockerfile = (images.image_dir("gitea-standin") / "Dockerfile").read_text()
    assert all(f"ARG {k}" in dockerfile for args, _, _ in gitea for k in args)


# --- engine start (fake docker/dockerd on PATH: no real engine touched) ------------------------------

def _fake_bin(tmp_path, monkeypatch, dockerd_body: str):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    mark = tmp_path / "engine-up"
    (bin_dir / "docker").write_text(f'#!/bin/sh\ntest -e "{mark}"\n')
    (bin_dir / "dockerd").write_text("#!/bin/sh\n" + dockerd_body.replace("MARK", str(mark)))
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    from lab import engine

    monkeypatch.setattr(engine, "LAB_DIR", tmp_path)
    monkeypatch.setattr(engine, "DOCKERD_LOG", tmp_path / "dockerd.log")
    return engine


def test_engine_is_started_when_docker_info_does_not_answer(tmp_path, monkeypatch):
    engine = _fake_bin(tmp_path, monkeypatch, 'echo "fake dockerd"; sleep 1; touch "MARK"; sleep 2\n')
    assert engine.ensure_engine(timeout=20) == "started"
    assert engine.ensure_engine(timeout=20) == "running", "idempotent: an answering engine is left alone"
    assert "fake dockerd" in (tmp_path / "dockerd.log").read_text()


def test_engine_that_dies_fails_fast_with_its_log(tmp_path, monkeypatch):
    from lab import LabError

    engine = _fake_bin(tmp_path, monkeypatch, 'echo "failed to start daemon: boom"; exit 1\n')
    with pytest.raises(LabError, match="boom"):
        engine.ensure_engine(timeout=20)


# --- bounded waits ---------------------------------------------------------------------------------

def test_wait_until_returns_the_first_truthy_result():
    from lab.util import wait_until

    answers = iter([False, None, "ready"])
    assert wait_until("x", lambda: next(answers), timeout=5, interval=0.01) == "ready"


def test_wait_until_is_bounded_and_shows_the_evidence():
    import time as _time

    from lab import LabError
    from lab.util import wait_until

    calls = []

    def never():
        calls.append(1)
        raise LabError("still booting")

    t0 = _time.monotonic()
    with pytest.raises(LabError) as err:
        wait_until("the thing", never, timeout=0.3, interval=0.05, on_fail=lambda: "LAST LOGS")
    assert _time.monotonic() - t0 < 2
    assert len(calls) <= int(0.3 / 0.05) + 3
    assert "the thing" in str(err.value) and "still booting" in str(err.value) and "LAST LOGS" in str(err.value)


def test_wait_until_gives_up_at_once_when_told():
    from lab.util import GiveUp, wait_until

    calls = []

    def dead():
        calls.append(1)
        raise GiveUp("process exited")

    with pytest.raises(GiveUp, match="process exited"):
        wait_until("x", dead, timeout=30, interval=0.01)
    assert calls == [1]


# --- shared emulated AWS ----------------------------------------------------------------------------

def test_host_entry_names_a_shared_aws_only_when_there_is_one():
    ports = dict(ip="172.20.0.2", admin_ssh_port=2222, ssh_port=1, https_port=2, http_port=3, git_ssh_port=4, known_hosts="k")
    assert "aws" not in state.host_entry(**ports)
    assert state.host_entry(**ports, aws="drill")["aws"] == "drill"


def test_forwarder_relays_both_ways_and_closes_when_the_target_is_dead():
    """The moto sidecar of a host on a shared AWS is this relay: bytes must pass unchanged."""
    import asyncio
    import socket

    from lab import forward

    async def scenario():
        async def echo(reader, writer):
            writer.write(b"got:" + await reader.read(100))
            await writer.drain()
            writer.close()

        target = await asyncio.start_server(echo, "127.0.0.1", 0)
        target_port = target.sockets[0].getsockname()[1]
        relay = await forward.serve(("127.0.0.1", 0), ("127.0.0.1", target_port))
        relay_port = relay.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", relay_port)
        writer.write(b"ping")
        writer.write_eof()
        answer = await asyncio.wait_for(reader.read(), timeout=5)
        writer.close()

        with socket.socket() as s:  # a port nothing listens on
            s.bind(("127.0.0.1", 0))
            dead_port = s.getsockname()[1]
        dead = await forward.serve(("127.0.0.1", 0), ("127.0.0.1", dead_port))
        reader, writer = await asyncio.open_connection("127.0.0.1", dead.sockets[0].getsockname()[1])
        closed = await asyncio.wait_for(reader.read(), timeout=15)
        writer.close()
        for server in (target, relay, dead):
            server.close()
        return answer, closed

    answer, closed = asyncio.run(scenario())
    assert answer == b"got:ping"
    assert closed == b""


def test_forwarder_address_parsing():
    from lab import forward

    assert forward.address("127.0.0.1:5050") == ("127.0.0.1", 5050)
    with pytest.raises(ValueError):
        forward.address("5050")


def test_cli_up_takes_a_shared_aws():
    ns = cli.parser().parse_args(["up", "h1", "h2", "--aws", "drill"])
    assert ns.aws == "drill" and ns.names == ["h1", "h2"]
    assert cli.parser().parse_args(["up", "h1"]).aws is None
    assert "aws-down" in cli.COMMANDS

"""tasks/gitea.py: the Compose stack runs healthy, bound where it should be, with its admin."""

import json


def test_both_services_running_and_healthy(target):
    ps = [json.loads(line) for line in target.compose("ps --format json").stdout.splitlines() if line.strip()]
    if len(ps) == 1 and isinstance(ps[0], list):  # older compose prints one JSON array
        ps = ps[0]
    state = {c["Service"]: (c["State"], c.get("Health", "")) for c in ps}
    expected = {"gitea": ("running", "healthy")}
    if not target.data.get("database_endpoint"):  # else PostgreSQL is external (RDS): no db container
        expected["db"] = ("running", "healthy")
    if target.data.get("grafana_enabled"):
        expected["grafana"] = ("running", "healthy")
    assert state == expected


def test_images_are_the_pinned_ones(target):
    images = set(target.compose("config --images").stdout.split())
    external = target.data.get("database_endpoint")
    grafana = [target.data["grafana_image"]] if target.data.get("grafana_enabled") else []
    assert images == {target.data["gitea_image"], *([] if external else [target.data["postgres_image"]]), *grafana}


def test_an_external_database_is_used_over_verified_tls(target):
    """database_endpoint: Gitea talks to that PostgreSQL with verify-full, and no local one runs."""
    if not target.data.get("database_endpoint"):
        print(f"{target.name}: PostgreSQL runs in the Compose stack (no database_endpoint): nothing to check")
        return
    env = target.compose("exec -T gitea env").stdout
    assert f"GITEA__database__HOST={target.data['database_endpoint']}" in env.splitlines()
    assert "GITEA__database__SSL_MODE=verify-full" in env.splitlines()
    running = target.sudo("docker ps --format '{{.Names}}'").stdout.split()
    assert not [name for name in running if name.endswith("-db-1")], running


def test_published_ports(target):
    ports = target.sudo("docker ps --format '{{.Names}} {{.Ports}}'").stdout
    lines = dict(line.split(" ", 1) if " " in line else (line, "") for line in ports.splitlines())
    gitea = next(v for k, v in lines.items() if k.endswith("gitea-1"))
    for name, published in lines.items():
        if name.endswith("db-1"):
            assert "->" not in published  # PostgreSQL is never published
    assert f"127.0.0.1:{target.data['gitea_http_port']}->3000/tcp" in gitea
    assert f"0.0.0.0:{target.data['git_ssh_port']}->2222/tcp" in gitea
    assert "0.0.0.0:3000" not in gitea


def test_healthz_on_loopback_passes(target):
    out = target.sudo(f"curl -fsS http://127.0.0.1:{target.data['gitea_http_port']}/api/healthz").stdout
    assert json.loads(out)["status"] == "pass"


def test_first_admin_exists(target):
    out = target.compose("exec -T gitea gitea admin user list --admin").stdout
    assert target.data["gitea_admin_username"] in out.split()


def test_data_directories_owned_by_container_uids(target):
    root = target.data["data_root"]
    expect = {
        f"{root}/gitea/data": f"{target.data['gitea_uid']} 750",
        f"{root}/gitea/config": f"{target.data['gitea_uid']} 700",
    }
    if not target.data.get("database_endpoint"):
        expect[f"{root}/postgres"] = f"{target.data['postgres_uid']} 700"
    for path, owner_mode in expect.items():
        assert target.sudo(f"stat -c '%u %a' {path}").stdout.strip() == owner_mode, path


def test_git_ssh_port_is_gitea(target):
    banner = target.sudo(f"timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/{target.data['git_ssh_port']}; head -n 1 <&3'").stdout
    assert banner.startswith("SSH-2.0-") and "OpenSSH" not in banner


def app_ini(target) -> dict[str, dict[str, str]]:
    """Gitea's app.ini as Gitea reads it (section -> KEY -> value; "" is the root section). Read as
    Gitea's own uid: it keeps the file 0600, and root in the container has no capability to read
    another uid's files (cap_drop ALL)."""
    import configparser

    text = target.compose("exec -T gitea cat /etc/gitea/app.ini").stdout
    parser = configparser.RawConfigParser(default_section="\0none", interpolation=None, strict=False,
                                          delimiters=("=",), comment_prefixes=("#", ";"))
    parser.optionxform = str  # keys keep their case
    parser.read_string("[\0root]\n" + text)
    ini = {("" if s == "\0root" else s): dict(parser.items(s)) for s in parser.sections()}
    for section in ini.values():
        for key, value in section.items():
            if len(value) > 1 and value[0] == value[-1] and value[0] in "`\"":  # go-ini's quoting
                section[key] = value[1:-1]
    return ini


def test_site_title_reaches_gitea(target):
    """gitea_app_name lands in app.ini's root section (GITEA____APP_NAME), not a [default] section,
    and Gitea reports it: /api/healthz's description is APP_NAME."""
    ini = app_ini(target)
    assert ini[""].get("APP_NAME") == target.data["gitea_app_name"]
    assert "default" not in ini, ini.get("default")
    out = target.sudo(f"curl -fsS http://127.0.0.1:{target.data['gitea_http_port']}/api/healthz").stdout
    assert json.loads(out)["description"] == target.data["gitea_app_name"]


def test_operator_config_reaches_app_ini(target):
    """Every gitea_config entry is in app.ini as written; a KEY__FILE holds its secret file's value."""
    config = target.data.get("gitea_config") or {}
    if not config:
        print(f"{target.name}: no gitea_config: nothing to check")
        return
    ini = app_ini(target)
    for section, entries in config.items():
        for key, value in entries.items():
            if key.endswith("__FILE"):
                key = key[:-len("__FILE")]
                value = target.sudo(f"cat {target.data['data_root']}/secrets/{value}").stdout.rstrip("\n")
                assert value, f"secret file of [{section}] {key} is empty"
            elif isinstance(value, bool):
                value = "true" if value else "false"
            assert ini.get(section, {}).get(key) == str(value), (section, key)
    assert ini["server"]["PUBLIC_URL_DETECTION"] == "never"


def _bytes(size: str) -> int:
    """compose's mem_limit ("1g", "512m") in bytes, as `docker inspect` shows it."""
    units = {"k": 2**10, "m": 2**20, "g": 2**30}
    return int(size[:-1]) * units[size[-1].lower()] if size[-1].lower() in units else int(size)


def test_containers_are_confined(target):
    """Each container: no privilege regained (no-new-privileges), every capability dropped but what
    its entrypoint needs, a read-only image with tmpfs scratch, memory and pids limits from the
    inventory, time to stop cleanly."""
    wanted = {"gitea": ([], target.data["gitea_memory_limit"], target.data["gitea_pids_limit"], 30)}
    if not target.data.get("database_endpoint"):
        wanted["db"] = (["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID"], target.data["db_memory_limit"],
                        target.data["db_pids_limit"], 60)
    for service, (caps, memory, pids, grace) in wanted.items():
        info = json.loads(target.sudo(f"docker inspect gitea-{service}-1").stdout)[0]
        host = info["HostConfig"]
        assert host["SecurityOpt"] == ["no-new-privileges:true"], (service, host["SecurityOpt"])
        assert host["CapDrop"] == ["ALL"] and sorted(host["CapAdd"] or []) == caps, (service, host["CapAdd"])
        assert host["ReadonlyRootfs"] is True and "/tmp" in (host["Tmpfs"] or {}), service
        assert (host["Memory"], host["PidsLimit"]) == (_bytes(memory), pids), service
        assert info["Config"]["StopTimeout"] == grace, service
        write = target.sudo(f"docker exec gitea-{service}-1 touch /usr/local/bin/gitea-deploy-probe")
        assert write.rc != 0 and "Read-only file system" in write.stderr, (service, write.stderr)

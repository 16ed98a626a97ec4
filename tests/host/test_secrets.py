"""tasks/secrets.py: secrets exist once, are readable only by their consumer, and leak nowhere."""

import stat

from tasks.secrets import layout


def test_secrets_directory_is_root_only(target):
    d = target.host.file(f"{target.data['data_root']}/secrets")
    assert d.is_directory and d.user == "root" and d.mode == 0o700


def test_each_secret_has_its_owner_and_mode(target):
    for name, (owner, group, mode) in layout(target.data).items():
        path = f"{target.data['data_root']}/secrets/{name}"
        uid, gid, octal, size = target.sudo(f"stat -c '%u %g %a %s' {path}").stdout.split()
        assert (int(uid), int(gid), octal) == (target.data[owner], target.data[group], mode), name
        assert int(size) >= 32, f"{name} is too short to be generated"


def test_admin_password_is_root_only(target):
    path = f"{target.data['data_root']}/secrets/admin_password"
    uid, octal, size = target.sudo(f"stat -c '%u %a %s' {path}").stdout.split()
    assert uid == "0" and octal == "600" and int(size) > 8


def test_no_secret_in_docker_inspect(target, secret_values):
    inspect = target.sudo("docker inspect $(docker ps -aq)").stdout
    assert "/run/secrets/db_password" in inspect  # the file path is there; the value is not
    assert not [v for v in secret_values if v in inspect]


def test_no_secret_in_any_process_list(target, secret_values):
    processes = target.sudo("ps -eo args").stdout
    assert "gitea" in processes and ("postgres" in processes or target.data.get("database_endpoint"))
    assert not [v for v in secret_values if v in processes]


def test_no_secret_readable_by_other_users(target):
    """Grep as `nobody` through everything it can reach: permission bits and every parent
    directory's, as they really apply (app.ini is 0644, but in a 0700 directory)."""
    root = target.data["data_root"]
    found = target.sudo(
        f"for f in {root}/secrets/*; do cat $f; echo; done | sed '/^$/d' | "
        f"setpriv --reuid=nobody --regid=nogroup --clear-groups "
        f"grep -rlsF -f - /etc {root} /root /home /var/lib /var/log /tmp || true"
    ).stdout.split()
    assert found == []


def test_compose_file_world_readable_but_secret_free(target, secret_values):
    compose = target.host.file(f"{target.data['data_root']}/compose.yaml")
    assert compose.mode & stat.S_IWOTH == 0
    assert not [v for v in secret_values if v in compose.content_string]


def test_the_login_user_cannot_read_gitea_files_without_sudo(target):
    """The SSH user (`admin`, uid 1000 on Debian's AMIs) must not own Gitea's files: it used to
    be the rootless image's uid, so app.ini (every secret in it) was admin's to read."""
    root = target.data["data_root"]
    for path in (f"{root}/gitea/config/app.ini", f"{root}/secrets/secret_key"):
        assert target.host.run(f"cat {path}").rc != 0, f"{target.data.get('ssh_user')} reads {path} without sudo"
    for key in ("gitea_uid", "postgres_uid"):
        account = target.sudo(f"getent passwd {int(target.data[key])} | cut -d: -f7").stdout.strip()
        assert account in ("", "/usr/sbin/nologin", "/bin/false", "/sbin/nologin", "/usr/bin/false"), key

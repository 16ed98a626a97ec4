"""tasks/hardening.py: the kernel runs the deploy's sysctls (the kernel-wide ones only where the
host has a kernel of its own, `sysctl_kernel`), unused modules cannot load, no core dumps."""

import json

import pytest

from tasks import hardening


def test_the_kernel_runs_the_deploys_settings(target):
    wanted = hardening.wanted(target.data)
    out = target.sudo("sysctl -n " + " ".join(wanted)).stdout.split()
    assert dict(zip(wanted, map(int, out), strict=True)) == wanted
    drop_in = target.host.file(hardening.SYSCTL)
    assert drop_in.content_string == hardening.sysctl_conf(wanted)


def test_docker_still_forwards(target):
    assert target.sudo("sysctl -n net.ipv4.ip_forward").stdout.strip() == "1"


@pytest.mark.parametrize("module", ["cramfs", "udf", "sctp"])
def test_unused_modules_cannot_load(target, module):
    # -n: what modprobe would do, without doing it
    assert "install /bin/false" in target.sudo(f"modprobe -n -v {module}").stdout


def test_no_core_dumps(target):
    assert "* hard core 0" in " ".join(target.host.file(hardening.LIMITS).content_string.split())
    # Every container of the stack, whichever run here (no db with an external database).
    containers = target.sudo("docker ps --filter label=com.docker.compose.project=gitea --format '{{.Names}}'"
                             ).stdout.split()
    assert "gitea-gitea-1" in containers, containers
    for container in containers:
        ulimits = json.loads(target.sudo(f"docker inspect {container} --format '{{{{json .HostConfig.Ulimits}}}}'").stdout)
        assert ulimits == [{"Name": "core", "Hard": 0, "Soft": 0}], (container, ulimits)

"""The outer Docker engine: talk to it through the `docker` CLI, start `dockerd` if nothing answers."""

import json
import shutil
import subprocess
import time

from lab import LAB_DIR, LabError
from lab.config import ENGINE_TIMEOUT
from lab.util import GiveUp, run, say, tail, wait_until

DOCKERD_LOG = LAB_DIR / "dockerd.log"


def docker(*args, check=True, timeout=120, input=None, what=None) -> subprocess.CompletedProcess:
    return run(["docker", *map(str, args)], check=check, timeout=timeout, input=input, what=what)


def engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return docker("info", "--format", "{{.ServerVersion}}", check=False, timeout=20).returncode == 0
    except LabError:
        return False


def ensure_engine(timeout: float = ENGINE_TIMEOUT) -> str:
    """Idempotent: if `docker info` does not answer, start dockerd (data root kept) and poll, bounded."""
    if engine_answers():
        return "running"
    if shutil.which("docker") is None or shutil.which("dockerd") is None:
        raise LabError("no docker engine: install Debian's docker.io (`make host-packages`)")
    LAB_DIR.mkdir(parents=True, exist_ok=True)
    say(f"starting dockerd (log: {DOCKERD_LOG})")
    log = open(DOCKERD_LOG, "ab")  # noqa: SIM115 (dockerd keeps writing to it after we return)
    log.write(f"\n--- lab: dockerd started {time.strftime('%Y-%m-%d %H:%M:%S')} ---\n".encode())
    log.flush()
    proc = subprocess.Popen(
        ["dockerd"], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True, close_fds=True,
    )

    def up():
        if proc.poll() is not None:
            raise GiveUp(f"dockerd exited with {proc.returncode}; last lines of {DOCKERD_LOG}:\n"
                         f"{tail(DOCKERD_LOG)}")
        return engine_answers()

    try:
        wait_until("dockerd to answer `docker info`", up, timeout=timeout, interval=1.0,
                   on_fail=lambda: f"last lines of {DOCKERD_LOG}:\n{tail(DOCKERD_LOG)}")
    except LabError as e:
        raise LabError(f"could not start the docker engine: {e}") from None
    return "started"


# --- small docker queries -------------------------------------------------------------------------

def inspect(kind: str, name: str) -> dict | None:
    cp = docker(kind, "inspect", name, check=False, timeout=30)
    if cp.returncode != 0:
        return None
    data = json.loads(cp.stdout)
    return data[0] if data else None


def container(name: str) -> dict | None:
    return inspect("container", name)


def image_id(ref: str) -> str | None:
    cp = docker("image", "inspect", "--format", "{{.Id}}", ref, check=False, timeout=30)
    return cp.stdout.strip() if cp.returncode == 0 else None


def running(info: dict | None) -> bool:
    return bool(info and info["State"]["Running"] and not info["State"].get("Restarting"))


def logs(name: str, lines: int = 40) -> str:
    cp = docker("logs", "--tail", lines, name, check=False, timeout=30)
    return f"last logs of {name}:\n{(cp.stdout + cp.stderr).strip() or '(none)'}"


def remove_containers(*names: str) -> None:
    existing = [n for n in names if container(n) is not None]
    if existing:
        docker("rm", "-f", *existing, timeout=180)


def remove_volumes(*names: str) -> None:
    for n in names:
        if inspect("volume", n) is not None:
            docker("volume", "rm", "-f", n, timeout=60)


def containers_with_label(label: str) -> list[str]:
    cp = docker("ps", "-a", "--filter", f"label={label}", "--format", "{{.Names}}", timeout=30)
    return sorted(n for n in cp.stdout.split() if n)


def volumes_with_label(label: str) -> list[str]:
    cp = docker("volume", "ls", "-q", "--filter", f"label={label}", timeout=30)
    return sorted(n for n in cp.stdout.split() if n)


def ensure_network(name: str, labels: dict[str, str]) -> None:
    if inspect("network", name) is None:
        args = ["network", "create", "--driver", "bridge"]
        for k, v in labels.items():
            args += ["--label", f"{k}={v}"]
        docker(*args, name, timeout=60)

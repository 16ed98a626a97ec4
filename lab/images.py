"""Lab images, cached by content tag: built once, never rebuilt while their inputs are unchanged.

- ``base``: a debootstrap'd Debian 13 (trixie) rootfs imported as an image that boots systemd;
  tag = hash of the debootstrap recipe. A lean one of an older suite (BASE_RECIPES) where an image
  needs that suite's packages: the lab's PostgreSQL 15, for the major-upgrade drill.
- every ``lab/images/<name>/Dockerfile`` (``ARG BASE`` / ``FROM ${BASE}``), built with
  ``--build-arg BASE=<base tag>``; tag = hash of that directory's files + the base tag (+ the
  build args a caller gives: the Gitea stand-in is built once per registry tag from one Dockerfile).
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from lab import LAB_DIR, LabError
from lab.config import BUILD_TIMEOUT, DEBOOTSTRAP_TIMEOUT, IMAGE_REPO
from lab.engine import image_id
from lab.util import Timer, locked, say, tail

IMAGES_DIR = Path(__file__).resolve().parent / "images"
LOG_DIR = LAB_DIR / "logs"

# The base image's whole recipe: change anything here and the tag (and so the image) changes.
BASE_RECIPE = {
    "suite": "trixie",
    "variant": "minbase",
    "include": ["systemd", "systemd-sysv", "openssh-server", "python3", "sudo", "ca-certificates",
                "iproute2", "curl"],
    "mirror": "http://deb.debian.org/debian",
    "import_changes": ['CMD ["/sbin/init"]'],
}
# Other suites' bases: only what an image built on them needs (no systemd: they run one program).
BASE_RECIPES = {"trixie": BASE_RECIPE,
                "bookworm": {**BASE_RECIPE, "suite": "bookworm", "include": ["ca-certificates"], "import_changes": []}}
_IGNORED = {"__pycache__", ".git", ".DS_Store"}


def recipe_hash(recipe: dict) -> str:
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def dir_hash(path: Path, base_tag: str, build_args: dict[str, str] | None = None) -> str:
    """Hash of every file under path (relative name, exec bit, content) plus the base tag and any
    build args (none: the same hash as before build args existed, so other tags stay)."""
    h = hashlib.sha256()
    h.update(f"base={base_tag}\0".encode())
    for k, v in sorted((build_args or {}).items()):
        h.update(f"arg:{k}={v}\0".encode())
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if d not in _IGNORED)
        for f in sorted(files):
            if f in _IGNORED or f.endswith((".pyc", "~", ".swp")):
                continue
            p = Path(root) / f
            mode = "x" if os.access(p, os.X_OK) else "-"
            h.update(f"{p.relative_to(path).as_posix()}\0{mode}\0".encode())
            h.update(p.read_bytes())
            h.update(b"\0")
    return h.hexdigest()[:12]


def base_tag(suite: str = "trixie") -> str:
    if suite not in BASE_RECIPES:
        raise LabError(f"no lab base for Debian {suite!r} (have: {', '.join(BASE_RECIPES)})")
    name = "base" if suite == "trixie" else f"base-{suite}"
    return f"{IMAGE_REPO}/{name}:{recipe_hash(BASE_RECIPES[suite])}"


def image_dir(name: str) -> Path:
    return IMAGES_DIR / name


def available() -> list[str]:
    """Names of the lab images that have a Dockerfile (plus "base")."""
    return ["base"] + sorted(p.parent.name for p in IMAGES_DIR.glob("*/Dockerfile"))


def tag_for(name: str, build_args: dict[str, str] | None = None, suite: str = "trixie") -> str:
    if name == "base":
        return base_tag(suite)
    d = image_dir(name)
    if not (d / "Dockerfile").is_file():
        raise LabError(f"no lab image {name!r}: {d}/Dockerfile does not exist")
    return f"{IMAGE_REPO}/{name}:{dir_hash(d, base_tag(suite), build_args)}"


def ensure(name: str, build_args: dict[str, str] | None = None, suite: str = "trixie") -> str:
    """Build the lab image `name` (with these --build-arg values, on the base of this Debian suite)
    if its content tag does not exist yet; return the tag."""
    tag = tag_for(name, build_args, suite)
    if image_id(tag):
        return tag
    with locked(f"image-{name}"):
        if image_id(tag):  # another lab process built it while we waited
            return tag
        if name == "base":
            _build_base(tag, BASE_RECIPES[suite])
        else:
            _build_dir(name, tag, ensure("base", suite=suite), build_args or {})
    return tag


def _build_base(tag: str, r: dict) -> None:
    t = Timer()
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log = LOG_DIR / f"build-base-{r['suite']}.log"
    say(f"building {tag}: debootstrap {r['suite']} (~1-2 min; log: {log})")
    work = Path(tempfile.mkdtemp(prefix="gitea-lab-rootfs-", dir="/var/tmp"))
    rootfs = work / "rootfs"
    try:
        with open(log, "w") as fh:
            try:
                cp = subprocess.run(
                    ["debootstrap", f"--variant={r['variant']}", f"--include={','.join(r['include'])}",
                     r["suite"], str(rootfs), r["mirror"]],
                    stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    timeout=DEBOOTSTRAP_TIMEOUT,
                )
            except FileNotFoundError:
                raise LabError("debootstrap is not installed (`make host-packages`)") from None
            except subprocess.TimeoutExpired:
                raise LabError(f"debootstrap took more than {DEBOOTSTRAP_TIMEOUT}s; see {log}") from None
        if cp.returncode != 0:
            raise LabError(f"debootstrap failed (exit {cp.returncode}):\n{tail(log)}")
        changes = [a for c in r["import_changes"] for a in ("-c", c)]
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."],
                               stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        try:
            imp = subprocess.run(["docker", "import", *changes, "-", tag], stdin=tar.stdout,
                                 capture_output=True, text=True, timeout=600)
        finally:
            tar.stdout.close()
            tar.wait(timeout=600)
        if imp.returncode != 0 or tar.returncode != 0:
            raise LabError(f"docker import of the rootfs failed: {imp.stderr.strip()}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if work.exists():
            subprocess.run(["rm", "-rf", "--one-file-system", str(work)], check=False)
    say(f"built {tag} in {t}")


def _build_dir(name: str, tag: str, base: str, build_args: dict[str, str]) -> None:
    t = Timer()
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    # one log per variant, e.g. build-gitea-standin-1.27.4+standin.log
    variant = re.sub(r"[^A-Za-z0-9.+_-]", "_", "".join(f"-{v}" for _, v in sorted(build_args.items()) if v))
    log = LOG_DIR / f"build-{name}{variant}.log"
    args = [a for k, v in sorted(build_args.items()) for a in ("--build-arg", f"{k}={v}")]
    say(f"building {tag}{' with ' + ' '.join(args[1::2]) if args else ''} (log: {log})")
    env = dict(os.environ, DOCKER_BUILDKIT="0")  # the classic builder: uses local images as FROM, never pulls
    with open(log, "w") as fh:
        try:
            cp = subprocess.run(
                ["docker", "build", "--build-arg", f"BASE={base}", *args, "--label", f"{IMAGE_REPO}.lab-image={name}",
                 "-t", tag, str(image_dir(name))],
                stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, timeout=BUILD_TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            raise LabError(f"building {name} took more than {BUILD_TIMEOUT}s; see {log}") from None
    if cp.returncode != 0:
        raise LabError(f"building lab image {name} failed (exit {cp.returncode}):\n{tail(log)}")
    say(f"built {tag} in {t}")

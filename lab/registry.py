"""The lab registry. The outer engine pushes the deploy's images once into a registry container
published on the operator's 127.0.0.1 (random port); its storage is a docker volume that every lab
host's registry sidecar serves at 127.0.0.1:5000 inside that host. Push only when the digest changed.
"""

import json
import urllib.error
import urllib.request

from lab import LabError, images
from lab.config import (
    LABEL_ROLE,
    REGISTRY_CONTAINER,
    REGISTRY_IN_HOST,
    REGISTRY_VOLUME,
    SIDECAR_TIMEOUT,
    STANDIN_GITEA_TAGS,
    STANDIN_IMAGES,
    STANDIN_POSTGRES_TAGS,
    UPSTREAM_IMAGES,
)
from lab.engine import container, docker, image_id, inspect, logs, remove_containers, running
from lab.util import Timer, locked, say, wait_until

MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"


def references(mode: str) -> dict[str, str]:
    """The image references a lab host's deploy pulls (state["images"])."""
    if mode == "upstream":
        return dict(UPSTREAM_IMAGES)
    return {key: f"{REGISTRY_IN_HOST}/{repo}:{tag}" for key, (_, repo, tag) in STANDIN_IMAGES.items()}


def gitea_build_args(tag: str) -> dict[str, str]:
    """The --build-arg values of the Gitea stand-in pushed as lab/gitea-standin:<tag>."""
    return {"GITEA_STANDIN_VERSION": f"{tag}+standin", **STANDIN_GITEA_TAGS[tag]}


def standin_builds() -> list[tuple[str, dict[str, str], str, str, str]]:
    """What the lab registry holds: (lab image dir, build args, repository, tag, Debian suite); the
    Gitea stand-in once per STANDIN_GITEA_TAGS entry, PostgreSQL once per STANDIN_POSTGRES_TAGS
    entry, every other stand-in once."""
    builds = []
    for key, (name, repo, rtag) in STANDIN_IMAGES.items():
        if key == "gitea":
            builds += [(name, gitea_build_args(t), repo, t, "trixie") for t in STANDIN_GITEA_TAGS]
        elif key == "postgres":
            builds += [(name, {"PG_MAJOR": major}, repo, major, suite) for major, suite in STANDIN_POSTGRES_TAGS.items()]
        else:
            builds.append((name, {}, repo, rtag, "trixie"))
    return builds


def postgres_reference(major: str) -> str:
    """The lab's PostgreSQL of that major, as a host pulls it."""
    _, repo, _ = STANDIN_IMAGES["postgres"]
    return f"{REGISTRY_IN_HOST}/{repo}:{major}"


def gitea_references() -> dict[str, str]:
    """Every Gitea stand-in tag in the lab registry, as a host pulls it: tag -> reference."""
    _, repo, _ = STANDIN_IMAGES["gitea"]
    return {t: f"{REGISTRY_IN_HOST}/{repo}:{t}" for t in STANDIN_GITEA_TAGS}


def ensure_volume() -> None:
    if inspect("volume", REGISTRY_VOLUME) is None:
        docker("volume", "create", "--label", f"{LABEL_ROLE}=registry", REGISTRY_VOLUME)


def _outer_port(info: dict) -> int | None:
    for b in (info["NetworkSettings"]["Ports"] or {}).get("5000/tcp") or []:
        if b.get("HostIp") == "127.0.0.1":
            return int(b["HostPort"])
    return None


def _get(url: str, accept: str | None = None, timeout: float = 5):
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(req, timeout=timeout) as r:  # only ever 127.0.0.1
        return r.status, r.read()


def ensure_outer() -> int:
    """The outer registry container, running and answering; returns its 127.0.0.1 port."""
    ensure_volume()
    tag = images.ensure("registry")
    info = container(REGISTRY_CONTAINER)
    if not (running(info) and info["Config"]["Image"] == tag and _outer_port(info)):
        remove_containers(REGISTRY_CONTAINER)
        docker("run", "-d", "--name", REGISTRY_CONTAINER, "--init",
               "--label", f"{LABEL_ROLE}=registry",
               "-e", "REGISTRY_HTTP_ADDR=0.0.0.0:5000",  # inside its own namespace; published on 127.0.0.1 only
               "-p", "127.0.0.1::5000",
               "-v", f"{REGISTRY_VOLUME}:/var/lib/docker-registry", tag)
        info = container(REGISTRY_CONTAINER)
    port = _outer_port(info)

    def answers():
        try:
            return _get(f"http://127.0.0.1:{port}/v2/")[0] == 200
        except (urllib.error.URLError, OSError) as e:
            raise LabError(str(e)) from None

    wait_until(f"the outer registry on 127.0.0.1:{port}", answers, timeout=SIDECAR_TIMEOUT, interval=0.5,
               on_fail=lambda: logs(REGISTRY_CONTAINER))
    return port


def pushed_config_digest(port: int, repo: str, tag: str) -> str | None:
    """The image ID (config digest) the registry holds for repo:tag, or None."""
    try:
        status, body = _get(f"http://127.0.0.1:{port}/v2/{repo}/manifests/{tag}", accept=MANIFEST_V2)
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise LabError(f"registry: manifest {repo}:{tag}: HTTP {e.code}") from None
    except (urllib.error.URLError, OSError) as e:
        raise LabError(f"registry on 127.0.0.1:{port} did not answer: {e}") from None
    try:
        return json.loads(body)["config"]["digest"]
    except (ValueError, KeyError):
        return None


def publish_standins() -> dict[str, str]:
    """Build the stand-in images and push each to the lab registry unless it already holds that digest.
    The Gitea stand-in's tags share every layer, so each extra push only uploads its config."""
    with locked("registry"):
        port = ensure_outer()
        for name, build_args, repo, rtag, suite in standin_builds():
            local = images.ensure(name, build_args, suite)
            want = image_id(local)
            if pushed_config_digest(port, repo, rtag) == want:
                continue
            t = Timer()
            target = f"127.0.0.1:{port}/{repo}:{rtag}"
            say(f"pushing {local} as {REGISTRY_IN_HOST}/{repo}:{rtag}")
            docker("tag", local, target)
            try:
                docker("push", target, timeout=900, what=f"docker push {target}")
            finally:
                docker("rmi", target, check=False)  # only the temporary name; the image stays
            if pushed_config_digest(port, repo, rtag) != want:
                raise LabError(f"registry does not hold {local} as {repo}:{rtag} after the push")
            say(f"pushed {repo}:{rtag} in {t}")
    return references("standin")

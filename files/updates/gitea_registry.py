"""The newest tag of an image's version line, asked of its registry (issue 12, patch updates).

Installed beside gitea_backup.py in /usr/local/lib/gitea-deploy/; the updater imports it. Runs with
python3's standard library only: the host has no pip, and the registry API needs no more than
urllib. The pure functions (references, versions, the line) and the HTTP client are unit-tested
against a local registry stand-in (tests/unit/test_gitea_registry.py).

A line is what a pinned tag may move along without a person: same suffix (-rootless, -trixie),
same count of numbers and the same leading numbers (Gitea 1.27.x, PostgreSQL 17.x). Tags are
listed through the distribution API (GET /v2/<name>/tags/list, paged by Link headers) with the
anonymous Bearer token the registry's challenge points to, as `docker pull` gets one.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass

# Docker's default registry: references without a registry part name it, and its API lives on
# another host than its name.
DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"

MAX_PAGES = 100  # a registry whose Link headers never end (or loop) must not keep the updater busy
MAX_BODY = 16 * 1024 * 1024  # a tags page is kilobytes; more is not a tags page
USER_AGENT = "gitea-deploy-updates"

# The reference grammar's parts (distribution/reference), enough to keep a reference's pieces out
# of the URL's syntax: a repository of lowercase components, a tag of at most 128 characters.
_REGISTRY = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
                       r"|\[[0-9A-Fa-f:]+\])(?::[0-9]+)?")
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_VERSION = re.compile(r"([0-9]+(?:\.[0-9]+)*)(.*)")
_LINK = re.compile(r"<([^>]*)>([^,]*)")
_AUTH_PARAM = re.compile(r'([A-Za-z_]+)="([^"]*)"')


class RegistryError(RuntimeError):
    """Listing tags failed; the message names the URL and why (it goes to the updater's log)."""


# --- references ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Reference:
    registry: str  # as written in references: docker.io, docker.gitea.com, 127.0.0.1:5000
    repository: str  # the full path: library/postgres, gitea, lab/gitea-standin
    tag: str


def parse_reference(ref: str) -> Reference:
    """registry/repository:tag with Docker's defaults. A digest pins one image, not a line, so it
    is refused rather than followed: the updater must not move an image someone pinned by digest."""
    if "@" in ref:
        raise ValueError(f"{ref!r} is pinned by digest: it names one image, not a version line to follow")
    first, slash, rest = ref.partition("/")
    # Docker's rule: the first part is a registry when it looks like a host (a dot, a port, localhost).
    if slash and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, rest
        if not _REGISTRY.fullmatch(registry):
            raise ValueError(f"{ref!r}: {registry!r} is not a registry host[:port]")
    else:
        registry, path = DOCKER_HUB, ref
    if registry == "index.docker.io":  # the old name of the same registry
        registry = DOCKER_HUB
    repository, colon, tag = path.rpartition(":")
    if not colon:
        raise ValueError(f"{ref!r} has no tag: a version line starts from a tag such as gitea:1.27.3-rootless")
    if not _TAG.fullmatch(tag):
        raise ValueError(f"{ref!r}: {tag!r} is not a tag (letters, digits and _ . -, at most 128)")
    if not all(_COMPONENT.fullmatch(part) for part in repository.split("/")):
        raise ValueError(f"{ref!r}: {repository!r} is not a repository name (lowercase a-z 0-9 and . _ __ - "
                         f"between slashes)")
    if registry == DOCKER_HUB and "/" not in repository:
        repository = f"library/{repository}"  # Docker Hub's official images
    return Reference(registry, repository, tag)


def api_base(ref: Reference) -> str:
    """The registry's API root. Plain http only for loopback, which Docker treats as an insecure
    registry by default (a lab registry has no certificate); everything else is https."""
    if ref.registry == DOCKER_HUB:
        return f"https://{DOCKER_HUB_API}"
    return f"{'http' if _loopback(ref.registry) else 'https'}://{ref.registry}"


def _loopback(registry: str) -> bool:
    host = registry[1:].partition("]")[0] if registry.startswith("[") else registry.rpartition(":")[0] or registry
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback  # 127.0.0.0/8 as Docker's default, and ::1
    except ValueError:
        return False


# --- versions -----------------------------------------------------------------------------------

def parse_version(tag: str) -> tuple[tuple[int, ...], str] | None:
    """The leading dotted numbers and the rest: 1.27.3-rootless is ((1, 27, 3), "-rootless").
    None for a tag that does not start with a number (latest, nightly, dev-rootless)."""
    match = _VERSION.fullmatch(tag)
    if not match:
        return None
    return tuple(int(number) for number in match[1].split(".")), match[2]


# How much of a version must stay when a release is taken without a person, per Compose service:
# Gitea within its minor line (a minor migrates the database one way), PostgreSQL within its major
# (a major needs a dump and restore). gitea-update auto and the deploy's plan both read it.
LINES = {"gitea": 2, "db": 1}


def newest_in_line(tags: Iterable[str], current_tag: str, depth: int) -> str:
    """The greatest tag of current_tag's line: the same suffix, the same count of numbers and the
    same first `depth` numbers (2: Gitea's minor line, 1: PostgreSQL's major). Never one below
    current_tag, which is returned when nothing newer is listed (or current_tag itself is gone)."""
    current = parse_version(current_tag)
    if current is None:
        raise ValueError(f"tag {current_tag!r} does not start with a version number: it has no line to follow")
    numbers, suffix = current
    if not 0 <= depth <= len(numbers):
        raise ValueError(f"depth {depth} for tag {current_tag!r}: must be 0 to {len(numbers)} (its count of numbers)")
    best, best_numbers = current_tag, numbers
    # Sorted, so which of two equal versions (1.27.04, 1.27.4) wins does not depend on the registry's order.
    for tag in sorted(tags):
        version = parse_version(tag)
        if version is None:
            continue
        candidate, candidate_suffix = version
        if (candidate_suffix == suffix and len(candidate) == len(numbers)
                and candidate[:depth] == numbers[:depth] and candidate > best_numbers):
            best, best_numbers = tag, candidate
    return best


# --- the registry API ---------------------------------------------------------------------------

def list_tags(ref: Reference, *, timeout: float = 20, page_size: int = 100) -> list[str]:
    """Every tag of the repository, in the registry's order, following the Link headers page by
    page. The token of the first challenge is kept for the following pages (one token request per
    listing, not per page); a 401 despite a token asks for a fresh one once, then fails."""
    base = api_base(ref)
    url = f"{base}/v2/{ref.repository}/tags/list?n={page_size}"
    tags: list[str] = []
    token = None
    for _ in range(MAX_PAGES):
        body, headers, token = _get_authorized(url, ref, token, timeout)
        page = _decode(url, body)
        page_tags = page.get("tags", False) if isinstance(page, dict) else False
        if page_tags is None:
            page_tags = []  # a repository without tags may answer null
        if not isinstance(page_tags, list) or not all(isinstance(tag, str) for tag in page_tags):
            raise RegistryError(f"GET {url}: not a tags list (no \"tags\" array of strings)")
        tags.extend(page_tags)
        next_url = _next_link(headers.get_all("Link") or [], url)
        if next_url is None:
            return tags
        url = next_url
    raise RegistryError(f"GET {url}: still more tags after {MAX_PAGES} pages of {page_size}; stopped "
                        f"(a registry whose Link headers do not end)")


def _get_authorized(url: str, ref: Reference, token: str | None, timeout: float):
    """GET url with the token, answering a Bearer challenge at most once. Returns the body, the
    headers and the token to use for the next page."""
    try:
        body, headers = _get(url, token, timeout)
        return body, headers, token
    except _Unauthorized as denied:
        challenge = denied.challenge
        if not challenge.lower().startswith("bearer "):
            raise RegistryError(f"GET {url}: HTTP 401 Unauthorized, and the challenge is not Bearer "
                                f"({challenge or 'none'}): only anonymous token auth is supported") from None
    token = _fetch_token(url, challenge, ref, timeout)
    try:
        body, headers = _get(url, token, timeout)
    except _Unauthorized:
        raise RegistryError(f"GET {url}: HTTP 401 Unauthorized even with the token its challenge "
                            f"pointed to (no pull access?)") from None
    return body, headers, token


def _fetch_token(url: str, challenge: str, ref: Reference, timeout: float) -> str:
    """The token endpoint named by the challenge's realm, asked with its service and scope (pull
    on this repository when the challenge names none). Anonymous: no credential is ever sent."""
    params = dict(_AUTH_PARAM.findall(challenge))
    realm = params.get("realm", "")
    # http only where the registry itself is http (loopback); never file: or ftp: from a challenge.
    allowed = ("https", "http") if url.startswith("http:") else ("https",)
    if urllib.parse.urlsplit(realm).scheme not in allowed or not urllib.parse.urlsplit(realm).netloc:
        raise RegistryError(f"GET {url}: the Bearer challenge's realm {realm!r} is not an {' or '.join(allowed)} URL")
    query = {"scope": params.get("scope") or f"repository:{ref.repository}:pull"}
    if params.get("service"):
        query = {"service": params["service"], **query}
    token_url = f"{realm}{'&' if '?' in realm else '?'}{urllib.parse.urlencode(query)}"
    try:
        body, _ = _get(token_url, None, timeout)
    except _Unauthorized:
        raise RegistryError(f"GET {token_url}: HTTP 401 Unauthorized (the token endpoint wants credentials)") from None
    answer = _decode(token_url, body)
    token = (answer.get("token") or answer.get("access_token")) if isinstance(answer, dict) else None
    if not isinstance(token, str) or not token:
        raise RegistryError(f"GET {token_url}: no \"token\" or \"access_token\" in the answer")
    return token


class _Unauthorized(Exception):
    """A 401; the challenge decides whether a token can help."""

    def __init__(self, challenge: str):
        super().__init__(challenge)
        self.challenge = challenge


def _get(url: str, token: str | None, timeout: float):
    """One GET: the body and the headers, _Unauthorized on 401, RegistryError on anything else."""
    request = urllib.request.Request(url, headers={"Accept": "application/json", "User-Agent": USER_AGENT})
    if token:
        # Unredirected: urllib would carry the header along a redirect to another host.
        request.add_unredirected_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read(MAX_BODY + 1)
            headers = response.headers
    except urllib.error.HTTPError as error:
        if error.code == 401:
            raise _Unauthorized(error.headers.get("WWW-Authenticate", "")) from None
        raise RegistryError(f"GET {url}: HTTP {error.code} {error.reason}{_error_detail(error)}") from None
    except TimeoutError:
        raise RegistryError(f"GET {url}: no answer within {timeout:g} s") from None
    except urllib.error.URLError as error:
        raise RegistryError(f"GET {url}: unreachable ({error.reason})") from None
    except (OSError, http.client.HTTPException) as error:  # reset or cut off mid-answer
        raise RegistryError(f"GET {url}: unreachable ({error!r})") from None
    if len(body) > MAX_BODY:
        raise RegistryError(f"GET {url}: answer larger than {MAX_BODY} bytes")
    return body, headers


def _error_detail(error: urllib.error.HTTPError) -> str:
    """The registry's own words for an error ({"errors": [{"code", "message"}]}), when it gave them."""
    try:
        with error:
            errors = json.loads(error.read(64 * 1024))["errors"]
        words = "; ".join(f"{e.get('code', '')}: {e.get('message', '')}".strip(": ") for e in errors)
    except (OSError, http.client.HTTPException, ValueError, KeyError, TypeError, AttributeError):
        return ""
    return f" ({words})" if words else ""


def _decode(url: str, body: bytes):
    try:
        return json.loads(body)
    except ValueError as error:  # UnicodeDecodeError is one too
        raise RegistryError(f"GET {url}: not JSON ({error})") from None


def _next_link(values: list[str], url: str) -> str | None:
    """The rel="next" target of Link headers, resolved against the page's URL. It must stay on the
    registry: the token goes with it."""
    for value in values:
        for target, params in _LINK.findall(value):
            rels = re.search(r'rel\s*=\s*"?([^";]*)"?', params)
            if rels and "next" in rels[1].split():
                next_url = urllib.parse.urljoin(url, target)
                if urllib.parse.urlsplit(next_url)[:2] != urllib.parse.urlsplit(url)[:2]:
                    raise RegistryError(f"GET {url}: the next page {next_url!r} is on another host; not followed")
                return next_url
    return None

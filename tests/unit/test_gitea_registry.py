"""The registry client (files/updates/gitea_registry.py): references, versions and the version line
as tables; the tags listing against a registry stand-in served in this process on 127.0.0.1
(pages along Link headers, a Bearer challenge and its token endpoint, the failures)."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import urllib.parse

import pytest

from tests.unit.load import load_file

registry = load_file("files/updates/gitea_registry.py", "gitea_registry")

# In the registry's order (which is not numeric: 1.27.10 sorts before 1.27.2 as text).
TAGS = ["1.27.1-rootless", "1.27.10-rootless", "1.27.2-rootless", "1.27.4-rc0-rootless", "1.28.0-rootless",
        "latest", "nightly"]
GOOD_TOKEN = "lab-token-1"
SERVICE = "lab-registry"
NOT_KNOWN = {"errors": [{"code": "NAME_UNKNOWN", "message": "repository name not known to registry"}]}


# --- references, versions, lines -----------------------------------------------------------------

@pytest.mark.parametrize(("ref", "registry_", "repository", "tag"), [
    ("postgres:17.6-trixie", "docker.io", "library/postgres", "17.6-trixie"),
    ("docker.io/library/postgres:17.6-trixie", "docker.io", "library/postgres", "17.6-trixie"),
    ("docker.io/postgres:17.6-trixie", "docker.io", "library/postgres", "17.6-trixie"),
    ("index.docker.io/grafana/grafana:13.2.3", "docker.io", "grafana/grafana", "13.2.3"),
    ("gitea/gitea:1.27.3-rootless", "docker.io", "gitea/gitea", "1.27.3-rootless"),
    ("docker.gitea.com/gitea:1.27.3-rootless", "docker.gitea.com", "gitea", "1.27.3-rootless"),
    ("127.0.0.1:5000/lab/gitea-standin:1.27.3", "127.0.0.1:5000", "lab/gitea-standin", "1.27.3"),
    ("localhost/lab/gitea:1.27.3", "localhost", "lab/gitea", "1.27.3"),
    ("[::1]:5000/gitea:1.27.3", "[::1]:5000", "gitea", "1.27.3"),
])
def test_references_follow_dockers_defaults(ref, registry_, repository, tag):
    assert registry.parse_reference(ref) == registry.Reference(registry_, repository, tag)


@pytest.mark.parametrize(("ref", "message"), [
    ("postgres@sha256:" + "a" * 64, "'postgres@sha256:a+' is pinned by digest: it names one image, not a version line"),
    ("postgres:17.6@sha256:" + "a" * 64, "is pinned by digest"),
    ("docker.gitea.com/gitea", "'docker.gitea.com/gitea' has no tag"),
    ("127.0.0.1:5000/lab/gitea", "'127.0.0.1:5000/lab/gitea' has no tag"),  # the port is not a tag
    ("", "'' has no tag"),
    ("Gitea/Gitea:1.27.3", "'Gitea/Gitea' is not a repository name"),
    ("gitea:1.27.3?n=1", "'1.27.3\\?n=1' is not a tag"),
    ("bad_host.example/gitea:1.27.3", "'bad_host.example' is not a registry host"),
])
def test_references_that_name_no_tag_line_are_refused(ref, message):
    with pytest.raises(ValueError, match=message):
        registry.parse_reference(ref)


@pytest.mark.parametrize(("ref", "base"), [
    ("postgres:17.6-trixie", "https://registry-1.docker.io"),
    ("docker.gitea.com/gitea:1.27.3-rootless", "https://docker.gitea.com"),
    ("registry.example.com:8443/gitea:1", "https://registry.example.com:8443"),
    ("127.0.0.1:5000/lab/gitea-standin:1.27.3", "http://127.0.0.1:5000"),
    ("127.0.0.1/lab/gitea-standin:1.27.3", "http://127.0.0.1"),
    ("localhost:5000/gitea:1", "http://localhost:5000"),
    ("[::1]:5000/gitea:1", "http://[::1]:5000"),
    ("10.0.0.5:5000/gitea:1", "https://10.0.0.5:5000"),  # a private address is not loopback
    ("localhost.example.com/gitea:1", "https://localhost.example.com"),
])
def test_only_loopback_registries_are_spoken_to_in_plain_http(ref, base):
    assert registry.api_base(registry.parse_reference(ref)) == base


@pytest.mark.parametrize(("tag", "version"), [
    ("1.27.3-rootless", ((1, 27, 3), "-rootless")),
    ("17.6-trixie", ((17, 6), "-trixie")),
    ("17", ((17,), "")),
    ("1.27", ((1, 27), "")),
    ("1.27.4-rc0-rootless", ((1, 27, 4), "-rc0-rootless")),
    ("13.2.3", ((13, 2, 3), "")),
    ("latest", None),
    ("nightly", None),
    ("dev-rootless", None),
    ("v1.27.3", None),
])
def test_versions_are_the_leading_numbers_and_a_suffix(tag, version):
    assert registry.parse_version(tag) == version


GITEA_TAGS = ["1.26.9-rootless", "1.27.1-rootless", "1.27.3-rootless", "1.27.4-rootless", "1.27.10-rootless",
              "1.27.11-rc0-rootless", "1.27.12", "1.27.13.1-rootless", "1.27-rootless", "1.28.0-rootless",
              "latest", "nightly", "dev-rootless"]
POSTGRES_TAGS = ["17", "17-trixie", "17.5-trixie", "17.7-trixie", "17.9-trixie", "17.10-bookworm", "17.11",
                 "18.1-trixie", "18-trixie", "latest"]


@pytest.mark.parametrize(("tags", "current", "depth", "newest"), [
    (GITEA_TAGS, "1.27.3-rootless", 2, "1.27.10-rootless"),  # numeric: 10 > 4; never 1.28, an rc or no -rootless
    (["1.28.0-rootless", "1.27.4-rc0-rootless", "1.27.4", "1.27-rootless", "1.27.4.1-rootless", "2.27.4-rootless"],
     "1.27.3-rootless", 2, "1.27.3-rootless"),  # nothing of the line: stay
    (["1.27.1-rootless", "1.27.2-rootless", "1.26.9-rootless"], "1.27.3-rootless", 2, "1.27.3-rootless"),  # never lower
    ([], "1.27.3-rootless", 2, "1.27.3-rootless"),
    (GITEA_TAGS, "1.27.3-rootless", 1, "1.28.0-rootless"),  # depth 1 lets the minor move
    (GITEA_TAGS, "1.27.3-rootless", 3, "1.27.3-rootless"),  # depth 3: only itself
    (POSTGRES_TAGS, "17.6-trixie", 1, "17.9-trixie"),  # not 18, not bookworm, not 17-trixie or 17.11
    (POSTGRES_TAGS, "17.10-trixie", 1, "17.10-trixie"),  # 17.9 is lower though it sorts higher as text
    (POSTGRES_TAGS, "17", 0, "17"),  # 18 is 18-trixie (another suffix); 17.11 has two numbers
    (["1.27.3", "1.27.03", "1.27.04", "1.27.4"], "1.27.3", 2, "1.27.04"),  # equal versions: the same pick whatever the order
    (["1.27.4", "1.27.04", "1.27.03", "1.27.3"], "1.27.3", 2, "1.27.04"),
])
def test_the_newest_of_a_line(tags, current, depth, newest):
    assert registry.newest_in_line(tags, current, depth) == newest


@pytest.mark.parametrize(("current", "depth", "message"), [
    ("latest", 2, "tag 'latest' does not start with a version number"),
    ("dev-rootless", 1, "tag 'dev-rootless' does not start with a version number"),
    ("17.6-trixie", 3, "depth 3 for tag '17.6-trixie': must be 0 to 2"),
    ("17.6-trixie", -1, "depth -1 for tag '17.6-trixie': must be 0 to 2"),
])
def test_a_line_needs_a_version_to_start_from(current, depth, message):
    with pytest.raises(ValueError, match=message):
        registry.newest_in_line(GITEA_TAGS, current, depth)


# --- the registry stand-in ------------------------------------------------------------------------

class _Handler(http.server.BaseHTTPRequestHandler):
    """What the distribution API does for each repository under /v2/lab/ (see the tests below)."""

    server: _Registry

    def log_message(self, format, *args):
        pass  # pytest shows stderr of failing tests; the request list says more

    def do_GET(self):
        self.server.requests.append((self.path, self.headers.get("Authorization")))
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        if url.path == "/token":
            return self._token(query)
        repo = url.path.removeprefix("/v2/").removesuffix("/tags/list")
        if repo in ("lab/private", "lab/no-scope", "lab/other-service"):
            if self.headers.get("Authorization") != f"Bearer {GOOD_TOKEN}":
                return self._challenge(repo)
        elif repo == "lab/expiring":
            token = self.headers.get("Authorization", "").removeprefix("Bearer ")
            if not token.startswith("expiring-") or token in self.server.spent:
                return self._challenge(repo)
            self.server.spent.add(token)  # good for one page
        elif repo in ("lab/revoked", "lab/file-realm"):
            return self._challenge(repo)  # whatever token comes
        elif repo == "lab/basic":
            return self._send(401, NOT_KNOWN, {"WWW-Authenticate": 'Basic realm="lab"'})
        elif repo == "lab/garbage":
            return self._send(200, b"<html>registry maintenance</html>", {"Content-Type": "text/html"})
        elif repo == "lab/wrong-shape":
            return self._send(200, {"name": repo, "tags": [1, 2]})
        elif repo == "lab/empty":
            return self._send(200, {"name": repo, "tags": None})
        elif repo not in ("lab/open", "lab/absolute", "lab/elsewhere", "lab/endless", "lab/expiring"):
            return self._send(404, NOT_KNOWN)
        self._page(repo, int(query.get("n", 1000)), query.get("last"))

    def _page(self, repo, n, last):
        """Tags after `last`, n of them, and a Link to the rest (distribution's pagination)."""
        start = TAGS.index(last) + 1 if last else 0
        tags = TAGS[:n] if repo == "lab/endless" else TAGS[start:start + n]  # lab/endless: the first page, forever
        headers = {}
        if repo == "lab/endless" or start + n < len(TAGS):
            next_path = f"/v2/{repo}/tags/list?{urllib.parse.urlencode({'n': n, 'last': tags[-1]})}"
            host = {"lab/absolute": f"http://127.0.0.1:{self.server.port}",
                    "lab/elsewhere": f"http://localhost:{self.server.port}"}.get(repo, "")
            headers["Link"] = f'<{host}{next_path}>; rel="next"'
        self._send(200, {"name": repo, "tags": tags}, headers)

    def _challenge(self, repo):
        realm = f"http://127.0.0.1:{self.server.port}/token"
        params = {"lab/no-scope": f'realm="{realm}?issuer=lab",service="{SERVICE}"',
                  "lab/other-service": f'realm="{realm}",service="elsewhere",scope="repository:{repo}:pull"',
                  "lab/file-realm": 'realm="file:///etc/passwd"'}
        challenge = params.get(repo, f'realm="{realm}",service="{SERVICE}",scope="repository:{repo}:pull"')
        self._send(401, {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
                   {"WWW-Authenticate": f"Bearer {challenge}"})

    def _token(self, query):
        """Docker's token service: a pull token for the service and scope asked; Docker Hub's answer
        has `token`, other registries' may have only `access_token` (lab/no-scope gets that)."""
        scope = query.get("scope", "")
        if query.get("service") != SERVICE or not scope.startswith("repository:lab/") or not scope.endswith(":pull"):
            return self._send(400, {"errors": [{"code": "DENIED", "message": f"no token for {query}"}]})
        key = "access_token" if scope == "repository:lab/no-scope:pull" else "token"
        token = f"expiring-{len(self.server.spent) + 1}" if scope == "repository:lab/expiring:pull" else GOOD_TOKEN
        self._send(200, {key: token, "expires_in": 300})

    def _send(self, status, body, headers=None):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Registry(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.port = self.server_address[1]
        self.requests: list[tuple[str, str | None]] = []  # (path?query, Authorization)
        self.spent: set[str] = set()  # lab/expiring's tokens that were used

    def ref(self, repo: str):
        return registry.parse_reference(f"127.0.0.1:{self.port}/{repo}:1.27.3-rootless")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def lab_registry():
    server = _Registry()
    # A short poll: shutdown() waits for the loop to look (0.5 s by default, per test).
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def _pages(repo, n, lasts):
    return [f"/v2/{repo}/tags/list?n={n}"] + [f"/v2/{repo}/tags/list?n={n}&last={last}" for last in lasts]


# --- listing tags ---------------------------------------------------------------------------------

def test_tags_are_listed_page_by_page_along_relative_links(lab_registry):
    assert registry.list_tags(lab_registry.ref("lab/open"), page_size=3) == TAGS
    assert lab_registry.requests == [(path, None) for path in
                                     _pages("lab/open", 3, ["1.27.2-rootless", "latest"])]


def test_one_page_when_it_holds_every_tag(lab_registry):
    assert registry.list_tags(lab_registry.ref("lab/open")) == TAGS
    assert lab_registry.requests == [("/v2/lab/open/tags/list?n=100", None)]


def test_absolute_next_links_are_followed_on_the_same_registry(lab_registry):
    assert registry.list_tags(lab_registry.ref("lab/absolute"), page_size=4) == TAGS
    assert [path for path, _ in lab_registry.requests] == _pages("lab/absolute", 4, ["1.27.4-rc0-rootless"])


def test_a_next_link_to_another_host_is_not_followed(lab_registry):
    # The token would go with it; localhost is the same server, but not the same origin.
    with pytest.raises(registry.RegistryError) as error:
        registry.list_tags(lab_registry.ref("lab/elsewhere"), page_size=4)
    first = lab_registry.url("/v2/lab/elsewhere/tags/list?n=4")
    next_url = f"http://localhost:{lab_registry.port}/v2/lab/elsewhere/tags/list?n=4&last=1.27.4-rc0-rootless"
    assert str(error.value) == f"GET {first}: the next page {next_url!r} is on another host; not followed"
    assert len(lab_registry.requests) == 1


def test_a_bearer_challenge_gets_one_token_for_every_page(lab_registry):
    assert registry.list_tags(lab_registry.ref("lab/private"), page_size=3) == TAGS
    first, *rest = _pages("lab/private", 3, ["1.27.2-rootless", "latest"])
    assert lab_registry.requests == [
        (first, None),  # anonymous first: the 401 says where the token is
        (f"/token?service={SERVICE}&scope=repository%3Alab%2Fprivate%3Apull", None),
        (first, f"Bearer {GOOD_TOKEN}"),
        *[(path, f"Bearer {GOOD_TOKEN}") for path in rest],
    ]


def test_a_challenge_without_scope_asks_for_pull_on_the_repository(lab_registry):
    # ... and an access_token answer, and a realm that has a query of its own.
    assert registry.list_tags(lab_registry.ref("lab/no-scope")) == TAGS
    assert lab_registry.requests == [
        ("/v2/lab/no-scope/tags/list?n=100", None),
        (f"/token?issuer=lab&service={SERVICE}&scope=repository%3Alab%2Fno-scope%3Apull", None),
        ("/v2/lab/no-scope/tags/list?n=100", f"Bearer {GOOD_TOKEN}"),
    ]


def test_a_token_that_expires_between_pages_is_renewed(lab_registry):
    assert registry.list_tags(lab_registry.ref("lab/expiring"), page_size=4) == TAGS
    first, second = _pages("lab/expiring", 4, ["1.27.4-rc0-rootless"])
    token_path = "/token?service=lab-registry&scope=repository%3Alab%2Fexpiring%3Apull"
    assert lab_registry.requests == [
        (first, None), (token_path, None), (first, "Bearer expiring-1"),
        (second, "Bearer expiring-1"), (token_path, None), (second, "Bearer expiring-2"),
    ]


def test_a_token_the_registry_refuses_is_an_error(lab_registry):
    with pytest.raises(registry.RegistryError) as error:
        registry.list_tags(lab_registry.ref("lab/revoked"))
    url = lab_registry.url("/v2/lab/revoked/tags/list?n=100")
    assert str(error.value) == (f"GET {url}: HTTP 401 Unauthorized even with the token its challenge pointed to "
                                f"(no pull access?)")
    assert [auth for _, auth in lab_registry.requests] == [None, None, f"Bearer {GOOD_TOKEN}"]


def test_a_token_endpoint_that_refuses_is_named(lab_registry):
    with pytest.raises(registry.RegistryError) as error:
        registry.list_tags(lab_registry.ref("lab/other-service"))
    token_url = lab_registry.url("/token?service=elsewhere&scope=repository%3Alab%2Fother-service%3Apull")
    query = {"service": "elsewhere", "scope": "repository:lab/other-service:pull"}
    assert str(error.value) == f"GET {token_url}: HTTP 400 Bad Request (DENIED: no token for {query})"
    assert len(lab_registry.requests) == 2


@pytest.mark.parametrize(("repo", "reason"), [
    ("lab/missing", "HTTP 404 Not Found (NAME_UNKNOWN: repository name not known to registry)"),
    ("lab/garbage", "not JSON (Expecting value: line 1 column 1 (char 0))"),
    ("lab/wrong-shape", 'not a tags list (no "tags" array of strings)'),
    ("lab/basic", "HTTP 401 Unauthorized, and the challenge is not Bearer (Basic realm=\"lab\"): "
                  "only anonymous token auth is supported"),
    ("lab/file-realm", "the Bearer challenge's realm 'file:///etc/passwd' is not an https or http URL"),
])
def test_failures_name_the_url_and_the_reason(lab_registry, repo, reason):
    with pytest.raises(registry.RegistryError) as error:
        registry.list_tags(lab_registry.ref(repo))
    assert str(error.value) == f"GET {lab_registry.url(f'/v2/{repo}/tags/list?n=100')}: {reason}"
    assert len(lab_registry.requests) == 1  # nothing retried, no token asked of a file


def test_a_repository_without_tags_lists_none(lab_registry):
    assert registry.list_tags(lab_registry.ref("lab/empty")) == []


def test_pages_are_capped(lab_registry):
    with pytest.raises(registry.RegistryError) as error:
        registry.list_tags(lab_registry.ref("lab/endless"), page_size=2)
    last = lab_registry.url("/v2/lab/endless/tags/list?n=2&last=1.27.10-rootless")
    assert str(error.value) == (f"GET {last}: still more tags after 100 pages of 2; stopped "
                                f"(a registry whose Link headers do not end)")
    assert len(lab_registry.requests) == registry.MAX_PAGES == 100


def test_an_unreachable_registry_is_named():
    with socket.socket() as probe:  # a port nothing listens on: bound, then closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(registry.RegistryError) as error:
        registry.list_tags(registry.parse_reference(f"127.0.0.1:{port}/lab/open:1.27.3"), timeout=5)
    assert str(error.value) == (f"GET http://127.0.0.1:{port}/v2/lab/open/tags/list?n=100: "
                                f"unreachable ([Errno 111] Connection refused)")

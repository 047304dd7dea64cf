"""A local stand-in for the Hugging Face Hub, to test the real upload path end to end without network.

It answers the endpoints huggingface_hub 2.x calls to create a model repo, commit files inline (the "regular",
non-LFS path: the preupload answer says `regular` for every file) and download them again, on 127.0.0.1 with a free
port. Commits, repo snapshots and every request (headers and body) are kept, so tests can check what was sent.

Not exercised: LFS and xet uploads, the Hub's permission rules (only "a write needs the configured token"), and its
server-side validation beyond "README.md metadata is a YAML mapping".

    with run_local_hub(token="hf_...") as hub:
        env = {"HF_ENDPOINT": hub.url, ...}  # HF_ENDPOINT is read when huggingface_hub is imported
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml


USER = "hf-mtl-tester"
_REPO = r"(?P<repo>[^/]+/[^/]+)"
_REV = r"(?P<rev>[^/]+)"


def front_matter(readme: str) -> dict | None:
    """The YAML metadata block of a README (None without one); raises `yaml.YAMLError` when it does not parse."""
    match = re.match(r"^---\s*\n(.*?)\n---\s*\n", readme, flags=re.DOTALL)
    return yaml.safe_load(match.group(1)) if match else None


def git_blob_oid(content: bytes) -> str:
    """The git object id of a file, as the Hub reports it (clients compare it to skip unchanged files)."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class Commit:
    repo_id: str
    oid: str
    parent: str | None
    revision: str
    summary: str
    description: str
    added: dict[str, bytes]
    deleted: list[str]


@dataclass
class Repo:
    repo_id: str
    private: bool
    branches: dict[str, str] = field(default_factory=dict)  # branch -> commit oid
    snapshots: dict[str, dict[str, bytes]] = field(default_factory=dict)  # commit oid -> {path: content}

    @property
    def files(self) -> dict[str, bytes]:
        """The files of `main`."""
        return self.snapshots[self.branches["main"]]

    def resolve(self, revision: str) -> str | None:
        revision = unquote(revision)
        return self.branches.get(revision) or (revision if revision in self.snapshots else None)


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes


class LocalHub:
    """State of the local Hub: `repos` (id -> `Repo`), `commits` (in order), every request, and `unhandled` ones
    (endpoints it does not implement, or that failed): a test that expects a complete exchange asserts it is empty."""

    def __init__(self, token: str | None = None):
        self.token = token
        self.repos: dict[str, Repo] = {}
        self.commits: list[Commit] = []
        self.requests: list[RecordedRequest] = []
        self.unhandled: list[str] = []
        self.lock = threading.Lock()
        self.url = ""

    def commit(self, repo: Repo, branch: str, summary: str, description: str, added: dict, deleted: list) -> Commit:
        parent = repo.branches.get(branch)
        files = dict(repo.snapshots[parent]) if parent else {}
        for path in deleted:
            files = {p: c for p, c in files.items() if p != path and not p.startswith(path.rstrip("/") + "/")}
        files.update(added)
        oid = hashlib.sha1(f"{repo.repo_id}{parent}{summary}{len(self.commits)}".encode()).hexdigest()
        repo.snapshots[oid], repo.branches[branch] = files, oid
        commit = Commit(repo.repo_id, oid, parent, branch, summary, description, dict(added), list(deleted))
        self.commits.append(commit)
        return commit


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as httpx expects; every answer carries a Content-Length
    hub: LocalHub

    def log_message(self, format, *args):  # quiet: the tests read `hub.requests`
        pass

    # ------------------------------------------------------------------ plumbing

    def _send(self, status: int, body: bytes | dict | list = b"", headers: dict | None = None):
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
            headers = {"Content-Type": "application/json", **(headers or {})}
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":  # a HEAD answer has the headers of a GET, without the body
            self.wfile.write(body)

    def _error(self, status: int, message: str, code: str | None = None):
        # huggingface_hub maps X-Error-Code to RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError
        self._send(status, {"error": message}, {"X-Error-Message": message, **({"X-Error-Code": code} if code else {})})

    def _authorized(self) -> bool:
        if self.hub.token is None or self.headers.get("Authorization") == f"Bearer {self.hub.token}":
            return True
        self._error(401, "Invalid credentials in Authorization header")
        return False

    def _handle(self):
        method = self.command
        # huggingface_hub sends bytes or JSON bodies, with a Content-Length (no chunked streaming)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) if method == "POST" else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        with self.hub.lock:
            self.hub.requests.append(RecordedRequest(method, self.path, headers, body))
        url = urlsplit(self.path)
        path, query = url.path, parse_qs(url.query)
        routes = [
            ("GET", r"/api/agent-harnesses", lambda **_: self._send(200, {"standardEnvVars": [], "harnesses": {}})),
            ("GET", r"/api/whoami-v2", self._whoami),
            ("POST", r"/api/repos/create", self._create_repo),
            ("POST", r"/api/validate-yaml", self._validate_yaml),
            ("POST", rf"/api/models/{_REPO}/preupload/{_REV}", self._preupload),
            ("POST", rf"/api/models/{_REPO}/commit/{_REV}", self._commit),
            ("POST", rf"/api/models/{_REPO}/branch/(?P<branch>[^/]+)", self._create_branch),
            ("GET", rf"/api/models/{_REPO}/tree/{_REV}(?:/(?P<prefix>.*))?", self._tree),
            ("GET", rf"/api/models/{_REPO}(?:/revision/{_REV})?", self._model_info),
            ("GET|HEAD", rf"/{_REPO}/resolve/{_REV}/(?P<file>.+)", self._resolve),
        ]
        for methods, pattern, handler in routes:
            match = re.fullmatch(pattern, path)
            if match and method in methods.split("|"):
                try:
                    with self.hub.lock:
                        return handler(body=body, query=query, **match.groupdict())
                except Exception as error:  # a bug here must show up as a failed test, not a dropped connection
                    self.hub.unhandled.append(f"{method} {self.path}: {error!r}")
                    return self._error(500, f"The local Hub failed on {method} {path}: {error!r}")
        self.hub.unhandled.append(f"{method} {self.path}")
        self._error(404, f"The local Hub does not implement {method} {path}")

    do_GET = do_HEAD = do_POST = _handle

    def _repo(self, repo_id: str) -> Repo | None:
        repo = self.hub.repos.get(unquote(repo_id))
        if repo is None:
            self._error(404, f"Repository {repo_id} not found", "RepoNotFound")
        return repo

    def _revision(self, repo: Repo, rev: str) -> str | None:
        oid = repo.resolve(rev)
        if oid is None:
            self._error(404, f"Invalid rev id: {unquote(rev)}", "RevisionNotFound")
        return oid

    # ------------------------------------------------------------------ endpoints

    def _whoami(self, **_):
        if self._authorized():
            self._send(200, {"type": "user", "name": USER, "fullname": "hf_mtl tests", "orgs": []})

    def _create_repo(self, body, **_):
        if not self._authorized():
            return
        payload = json.loads(body or b"{}")
        if payload.get("type", "model") != "model":
            return self._error(400, f"The local Hub only hosts model repos, not {payload.get('type')!r}")
        repo_id = f"{payload.get('organization') or USER}/{payload['name']}"
        if repo_id in self.hub.repos:  # create_repo(exist_ok=True) takes a 409 carrying the url as "already there"
            message = "You already created this model repo"
            return self._send(409, {"error": message, "url": f"{self.hub.url}/{repo_id}"}, {"X-Error-Message": message})
        repo = self.hub.repos[repo_id] = Repo(repo_id, private=payload.get("visibility") == "private")
        self.hub.commit(repo, "main", "initial commit", "", {}, [])
        self._send(200, {"url": f"{self.hub.url}/{repo_id}", "name": repo_id, "id": repo_id})

    def _validate_yaml(self, body, **_):
        try:
            metadata = front_matter(json.loads(body)["content"])
        except yaml.YAMLError as error:
            return self._send(400, {"errors": [{"message": f"Invalid YAML in README.md: {error}"}]})
        if not isinstance(metadata, (dict, type(None))):
            return self._send(400, {"errors": [{"message": "README.md metadata must be a YAML mapping"}]})
        self._send(200, {"errors": [], "warnings": []})

    def _preupload(self, repo, rev, body, **_):
        if not self._authorized() or (repo := self._repo(repo)) is None or (oid := self._revision(repo, rev)) is None:
            return
        # Every file inline ("regular"); the oid of a file already there lets the client skip it when unchanged.
        existing = repo.snapshots[oid]
        oids = {path: git_blob_oid(content) for path, content in existing.items()}
        files = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": oids.get(f["path"])}
                 for f in json.loads(body)["files"]]
        self._send(200, {"files": files, "commitOid": oid})

    def _commit(self, repo, rev, body, query, **_):
        if not self._authorized() or (repo := self._repo(repo)) is None:
            return
        if query.get("create_pr"):
            return self._error(400, "The local Hub does not implement pull requests (create_pr)")
        branch = unquote(rev)
        if branch not in repo.branches:
            return self._error(404, f"Invalid rev id: {branch}", "RevisionNotFound")
        header, added, deleted = {}, {}, []
        for line in body.splitlines():
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                header = value
            elif key == "file" and value.get("encoding") == "base64":
                added[value["path"]] = base64.b64decode(value["content"])
            elif key in ("deletedFile", "deletedFolder"):
                deleted.append(value["path"] + ("/" if key == "deletedFolder" else ""))
            else:
                return self._error(400, f"The local Hub only takes inline base64 files, not {key!r} (no LFS/xet)")
        if header.get("parentCommit") not in (None, repo.branches[branch]):
            return self._error(412, f"A commit has happened since {header['parentCommit']}")
        commit = self.hub.commit(repo, branch, header.get("summary", ""), header.get("description", ""), added, deleted)
        url = f"{self.hub.url}/{repo.repo_id}/commit/{commit.oid}"
        self._send(200, {"success": True, "commitOid": commit.oid, "commitUrl": url})

    def _create_branch(self, repo, branch, **_):
        if not self._authorized() or (repo := self._repo(repo)) is None:
            return
        branch = unquote(branch)
        if branch in repo.branches:
            return self._error(409, f"Reference already exists: {branch}")
        repo.branches[branch] = repo.branches["main"]
        self._send(200, {})

    def _tree(self, repo, rev, prefix=None, **_):
        # Files only, as if `recursive=True`: enough for `list_repo_tree` / `list_repo_files` callers.
        if (repo := self._repo(repo)) is None or (oid := self._revision(repo, rev)) is None:
            return
        prefix = unquote(prefix or "").strip("/")
        entries = [
            {"type": "file", "path": path, "size": len(content), "oid": git_blob_oid(content)}
            for path, content in sorted(repo.snapshots[oid].items())
            if not prefix or path.startswith(prefix + "/")
        ]
        if prefix and not entries:
            return self._error(404, f"{prefix} does not exist on {unquote(rev)}", "EntryNotFound")
        self._send(200, entries)

    def _model_info(self, repo, rev=None, **_):
        if (repo := self._repo(repo)) is None or (oid := self._revision(repo, rev or "main")) is None:
            return
        files = repo.snapshots[oid]
        info = {"id": repo.repo_id, "sha": oid, "private": repo.private, "tags": [],
                "lastModified": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                "siblings": [{"rfilename": path} for path in sorted(files)]}
        if isinstance(metadata := front_matter(files.get("README.md", b"").decode()), dict):
            info["cardData"], info["tags"] = metadata, metadata.get("tags") or []
        self._send(200, info)

    def _resolve(self, repo, rev, file, **_):
        if (repo := self._repo(repo)) is None or (oid := self._revision(repo, rev)) is None:
            return
        content = repo.snapshots[oid].get(unquote(file))
        if content is None:
            return self._error(404, f"Entry not found: {unquote(file)}", "EntryNotFound")
        self._send(200, content, {"ETag": f'"{git_blob_oid(content)}"', "X-Repo-Commit": oid})


@contextlib.contextmanager
def run_local_hub(token: str | None = None):
    """Serve a `LocalHub` on 127.0.0.1 (a free port) in a background thread; yields it with its `url` set.

    With `token`, writes (and `whoami`) need `Authorization: Bearer <token>`; reads stay open, as for a public repo.
    """
    hub = LocalHub(token=token)
    handler = type("LocalHubHandler", (_Handler,), {"hub": hub})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="local-hub", daemon=True)
    thread.start()
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

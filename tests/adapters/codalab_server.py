"""A loopback stand-in for a CodaLab server's REST API: the requests the real `cl` 1.7.5 makes.

Only what `cl work`, `cl upload DIR`, `cl run`, `cl wait` and `cl download` send, answered
as codalab/rest/*.py answers them (JSON API documents, Content-Type exactly
application/json, which RestClient._make_request requires before it parses a body):

  GET   /rest/worksheets?specs=/            the home worksheet (cl work <address>::)
  GET   /rest/worksheets/<uuid>             its info (name, uuid)
  GET   /rest/bundles?worksheet=W&specs=S   names to uuids, the newest bundle of that name in W
  POST  /rest/bundles?worksheet=W           a new bundle (upload: dataset; run: its command,
                                            dependencies and metadata, as the CLI sent them)
  GET   /rest/bundles/<uuid>                bundle info; a run is `ready` once it "ran"
  POST  /rest/bundles/<uuid>/locations/     no bypass storage: the upload goes through the server
  PUT   /rest/bundles/<uuid>/contents/blob/ the upload, chunked (worker/upload_util.py)
  PATCH /rest/user/increment_disk_used      the upload's disk accounting
  GET   /rest/user                          disk used and quota
  GET   /rest/bundles/<uuid>/contents/info/ a run bundle is a directory
  GET   /rest/bundles/<uuid>/contents/blob/ its contents as .tar.gz (Content-Type application/gzip,
                                            Content-Encoding identity, as rest/bundles.py sends a directory)

Nothing is executed: where a real server would run the bundle, the test says what the run
bundle holds (`run_contents`) and its final state. Every request needs the bearer token the
CLI's state file holds, as the real server's OAuth check does. Binds 127.0.0.1 only.
"""
from __future__ import annotations

import glob
import io
import json
import os
import shutil
import subprocess
import tarfile
import threading
import time
import uuid as uuidlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parents[2]
CL_VENV = ROOT / ".venv-codalab"
TOKEN = "loopback-test-token"  # a made-up bearer token for the stand-in, not a credential
USER = "tester"


def new_uuid() -> str:
    return "0x" + uuidlib.uuid4().hex


class CodaLabStandIn:
    def __init__(self) -> None:
        self.worksheet = {"uuid": new_uuid(), "name": f"home-{USER}", "title": "", "owner_name": USER}
        self.bundles: dict[str, dict] = {}
        self.blobs: dict[str, bytes] = {}
        self.requests: list[tuple[str, str]] = []
        self.run_contents: Path | None = None  # what a finished run bundle holds
        self.run_state = "ready"
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.address = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "CodaLabStandIn":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def state_file(self) -> dict:
        """The CLI's state.json with a valid token for this address (what a past `cl work` login leaves)."""
        token = {"access_token": TOKEN, "refresh_token": "unused", "token_type": "Bearer", "scope": "default",
                 "expires_at": time.time() + 86400}
        return {"auth": {self.address: {"token_info": token, "username": USER}}, "sessions": {}}

    def add_run(self, name: str, contents: Path, state: str = "ready") -> str:
        """A run bundle that ran elsewhere (in the test's simulated worker): its uuid."""
        with self.lock:
            b = {"uuid": new_uuid(), "worksheet": self.worksheet["uuid"], "state": state, "bundle_type": "run",
                 "metadata": {"name": name}, "command": None, "dependencies": [], "contents": contents}
            self.bundles[b["uuid"]] = b
        return b["uuid"]

    def created(self, bundle_type: str) -> list[dict]:
        return [b for b in self.bundles.values() if b["bundle_type"] == bundle_type]

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _send(self, status: int, body: bytes = b"", content_type: str | None = None,
                      headers: dict | None = None) -> None:
                self.send_response(status)
                if content_type:
                    self.send_header("Content-Type", content_type)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _json(self, document: dict, status: int = 200) -> None:
                self._send(status, json.dumps(document).encode(), "application/json")

            def _error(self, status: int, message: str) -> None:
                self._send(status, message.encode(), "text/plain")

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        line = self.rfile.readline(100).strip()
                        size = int(line.split(b";")[0], 16)
                        if size == 0:
                            self.rfile.readline(100)
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline(100)
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _route(self, method: str) -> None:
                url = urlsplit(self.path)
                query = parse_qs(url.query, keep_blank_values=True)  # `specs=` is the home worksheet
                server.requests.append((method, url.path))
                body = self._body() if method in ("POST", "PUT", "PATCH") else b""
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    return self._error(401, "Unauthorized")
                parts = [p for p in url.path.split("/") if p]
                if parts[:1] != ["rest"]:
                    return self._error(404, "not found")
                with server.lock:
                    return self._rest(method, parts[1:], query, body)

            def _rest(self, method, parts, query, body):
                ws = server.worksheet
                if parts == ["worksheets"] and method == "GET":
                    # '' and '/' are the user's home worksheet (canonicalize.get_worksheet_uuid)
                    for spec in query.get("specs", []):
                        if spec.strip() not in ("", "/", ws["name"], ws["uuid"]):
                            return self._error(404, f"No worksheet found with name '{spec}'")
                    return self._json({"data": [{"type": "worksheets", "id": ws["uuid"], "attributes": ws}]})
                if parts == ["worksheets", ws["uuid"]] and method == "GET":
                    return self._json({"data": {"type": "worksheets", "id": ws["uuid"], "attributes": ws}})
                if parts == ["user"] and method == "GET":
                    used = sum(len(b) for b in server.blobs.values())
                    return self._json({"data": {"type": "users", "id": "1", "attributes": {
                        "user_name": USER, "disk_used": used, "disk_quota": 10 ** 12}}})
                if parts == ["user", "increment_disk_used"] and method == "PATCH":
                    return self._send(200)
                if parts == ["bundles"] and method == "GET":
                    found = []
                    for spec in query.get("specs", []):
                        named = [b for b in server.bundles.values() if spec in (b["uuid"], b["metadata"]["name"])
                                 and b["worksheet"] == query.get("worksheet", [None])[0]]
                        if not named:  # canonicalize.get_bundle_uuid's message
                            return self._error(404, f"bundle spec {spec} doesn't match any bundles")
                        found.append(named[-1])  # the newest of that name
                    return self._json({"data": [self._resource(b) for b in found]})
                if parts == ["bundles"] and method == "POST":
                    document = json.loads(body)
                    made = []
                    for item in document["data"]:
                        attributes = item["attributes"]
                        b = {"uuid": new_uuid(), "worksheet": query["worksheet"][0], "state": "created",
                             "bundle_type": attributes["bundle_type"], "metadata": attributes["metadata"],
                             "command": attributes.get("command"),
                             "dependencies": attributes.get("dependencies", []), "create_query": query}
                        server.bundles[b["uuid"]] = b
                        made.append(b)
                    return self._json({"data": [self._resource(b) for b in made]})
                if len(parts) >= 2 and parts[0] == "bundles" and parts[1] in server.bundles:
                    return self._bundle(method, server.bundles[parts[1]], parts[2:], query, body)
                return self._error(404, f"{method} /{'/'.join(parts)}: not part of this stand-in")

            def _resource(self, b: dict) -> dict:
                attributes = {k: v for k, v in b.items() if k not in ("worksheet", "create_query", "contents")}
                if b["bundle_type"] == "run" and b["state"] == "created":
                    attributes["state"] = server.run_state  # where a worker would have run it
                return {"type": "bundles", "id": b["uuid"], "attributes": attributes}

            def _bundle(self, method, b, rest, query, body):
                if rest == [] and method == "GET":
                    return self._json({"data": self._resource(b)})
                if rest == ["locations"] and method == "POST":
                    return self._json({"data": [{"type": "bundle_locations", "id": "1", "attributes": {}}]})
                if rest == ["contents", "blob"] and method == "PUT":
                    server.blobs[b["uuid"]] = body
                    b["upload_query"] = query
                    b["state"] = "ready"
                    return self._send(200)
                contents = b.get("contents") or server.run_contents
                if b["bundle_type"] != "run" or contents is None:
                    return self._error(404, f"bundle {b['uuid']}: no contents here")
                if rest == ["contents", "info"] and method == "GET":
                    return self._json({"data": {"name": b["metadata"]["name"], "type": "directory", "size": 0,
                                                "perm": 0o755, "link": None,
                                                "resolved_target": {"bundle_uuid": b["uuid"], "subpath": ""}}})
                if rest == ["contents", "blob"] and method == "GET":
                    buf = io.BytesIO()
                    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
                        for child in sorted(contents.iterdir()):
                            tar.add(child, arcname=child.name)
                    return self._send(200, buf.getvalue(), "application/gzip",
                                      {"Content-Encoding": "identity", "Target-Type": "directory",
                                       "Content-Disposition": f"attachment; filename={b['metadata']['name']}.tar.gz"})
                return self._error(404, "not found")

            def do_GET(self) -> None:
                self._route("GET")

            def do_POST(self) -> None:
                self._route("POST")

            def do_PUT(self) -> None:
                self._route("PUT")

            def do_PATCH(self) -> None:
                self._route("PATCH")

        return Handler


# --- The real client: its venv and a logged-in CodaLab home -----------------------------------

def python39() -> str | None:
    """The interpreter `make codalab-cli` uses: pyenv's 3.9.x, else python3.9 on PATH."""
    try:
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        root = ""
    found = sorted(glob.glob(f"{root or os.path.expanduser('~/.pyenv')}/versions/3.9.*/bin/python"))
    return found[0] if found else shutil.which("python3.9")


NO_PYTHON39 = ("no Python 3.9 interpreter (looked for $(pyenv root)/versions/3.9.*/bin/python and python3.9 on "
               "PATH): the CodaLab CLI 1.7.5 does not install on newer Pythons")


def build_cl_venv() -> Path | None:
    """`make codalab-cli` (idempotent: a stamp); None when there is no Python 3.9 to build it with."""
    py39 = python39()
    if py39 is None:
        return None
    proc = subprocess.run(["make", "-s", "codalab-cli", f"PYTHON39={py39}"], cwd=ROOT, capture_output=True,
                          text=True, timeout=3000)
    assert proc.returncode == 0, f"make codalab-cli failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    assert (CL_VENV / "bin" / "cl").is_file()
    return CL_VENV


def quiet_env(**extra: str) -> dict[str, str]:
    """No proxy (urllib would send loopback traffic through one), Google's 3.9 warnings off."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    return {**env, "PYTHONWARNINGS": "ignore", "NO_PROXY": "127.0.0.1", **extra}


def cl_home(cl_venv: Path, server: CodaLabStandIn, home: Path) -> dict[str, str]:
    """A CodaLab home as a logged-in user has it, its default instance the stand-in; the env to use it."""
    env = quiet_env(HOME=str(home), CODALAB_HOME=str(home / ".codalab"), CODALAB_SESSION="test",
                    PATH=f"{cl_venv / 'bin'}:/usr/bin:/bin")
    (home / ".codalab").mkdir(parents=True)
    (home / ".codalab" / "state.json").write_text(json.dumps(server.state_file()))
    # The CLI writes its own config on first use; then its default instance is the stand-in, so
    # nothing a test runs can reach worksheets.codalab.org.
    subprocess.run([str(cl_venv / "bin" / "cl"), "--version"], env=env, capture_output=True, check=True,
                   timeout=300)
    config = json.loads((home / ".codalab" / "config.json").read_text())
    config["cli"]["default_address"] = server.address
    (home / ".codalab" / "config.json").write_text(json.dumps(config))
    return env

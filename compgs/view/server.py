"""`compgs view`: serve the browser viewer and one splat file on localhost.

The server answers a fixed table of paths built at start-up: the viewer's own
static files, the page itself (with the file's URL filled in) and the one file
it was started for. Any other path, including every `..` trick, is a 404: no
path from a request is ever joined to a directory on disk.
"""

from __future__ import annotations

import http.server
import io
import ipaddress
import logging
import os
import shutil
import socket
import threading
import urllib.parse
from collections.abc import Callable
from pathlib import Path

from compgs.errors import InputError, check_port

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
SCENE_PREFIX = "/scene/"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".wasm": "application/wasm",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
# The page reads the file to open from this tag (see viewer/index.html).
FILE_META = '<meta name="compgs-file" content="" />'


def static_files() -> dict[str, Path]:
    """URL path -> file, for every file of the built viewer (index.html excluded)."""
    if not (STATIC_DIR / "index.html").is_file():
        raise InputError(
            f"the built viewer is missing from {STATIC_DIR}; rebuild it with "
            "`npm ci && npm run build` in viewer/"
        )
    return {
        "/" + p.relative_to(STATIC_DIR).as_posix(): p
        for p in sorted(STATIC_DIR.rglob("*"))
        if p.is_file() and p.name != "index.html"
    }


def viewer_page(file_url: str) -> bytes:
    """The viewer's index.html, set to open ``file_url`` (relative to the page)."""
    html = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    if FILE_META not in html:
        raise InputError(f"{STATIC_DIR / 'index.html'} has no compgs-file meta tag; rebuild it")
    quoted = file_url.replace("&", "&amp;").replace('"', "&quot;")
    return html.replace(FILE_META, f'<meta name="compgs-file" content="{quoted}" />').encode()


def scene_url_path(path: Path) -> str:
    return SCENE_PREFIX + urllib.parse.quote(path.name)


def _content_type(route: str) -> str:
    if route.startswith(SCENE_PREFIX):
        return "application/octet-stream"
    suffix = ".html" if route == "/" else Path(route).suffix.lower()
    return CONTENT_TYPES.get(suffix, "text/plain")


class _Handler(http.server.BaseHTTPRequestHandler):
    server: ViewerServer
    server_version = "compgs-view"

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def _answer(self, send_body: bool) -> None:
        route = urllib.parse.urlsplit(self.path).path
        target = self.server.routes.get(route)
        if target is None:
            self.send_error(404, "not found")
            return
        if isinstance(target, Path):
            try:
                body = target.open("rb")  # streamed: a scene may be large
                size = os.fstat(body.fileno()).st_size
            except OSError:
                self.send_error(404, "not found")
                return
        else:
            page = target()
            body, size = io.BytesIO(page), len(page)
        with body:
            self.send_response(200)
            self.send_header("Content-Type", _content_type(route))
            self.send_header("Content-Length", str(size))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            if send_body:
                shutil.copyfileobj(body, self.wfile)

    def log_message(self, format: str, *args) -> None:
        logger.debug("%s %s", self.address_string(), format % args)


class ViewerServer(http.server.ThreadingHTTPServer):
    """Serves the viewer and one file; ``url`` opens the file in the viewer."""

    daemon_threads = True

    def __init__(self, path: str | Path, host: str = "127.0.0.1", port: int = 8080) -> None:
        check_port(port)
        path = Path(path).resolve()
        if not path.is_file():
            raise InputError(
                f"{path}: no such file" if not path.exists() else f"{path}: not a file"
            )
        self.file = path
        scene = scene_url_path(path)
        page = viewer_page(scene.lstrip("/"))
        self.routes: dict[str, Path | Callable[[], bytes]] = {
            **static_files(),
            "/": lambda: page,
            "/index.html": lambda: page,
            scene: path,
        }
        if ":" in host:
            self.address_family = socket.AF_INET6
        try:
            super().__init__((host, port), _Handler)
        except OSError as e:
            hint = "; pass --port 0 for any free port" if e.errno in (98, 48, 10048) else ""
            raise InputError(f"cannot listen on {host}:{port}: {e.strerror or e}{hint}") from e
        if not _is_loopback(host):
            logger.warning("serving on %s: reachable from other machines on the network", host)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = host if ":" not in host else f"[{host}]"
        if host in ("0.0.0.0", "[::]"):
            host = "127.0.0.1" if host == "0.0.0.0" else "[::1]"
        return f"http://{host}:{port}/"

    def start(self) -> ViewerServer:
        """Serve from a background thread; `close` stops it."""
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            self.shutdown()
            self._thread.join()
            self._thread = None
        self.server_close()

    def __enter__(self) -> ViewerServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

"""`compgs view`'s server: the viewer, the one named file, and nothing else."""

from __future__ import annotations

import http.client
import inspect
import socket

import pytest

from compgs.cli.view import view
from compgs.errors import InputError
from compgs.view import ViewerServer
from compgs.view.server import STATIC_DIR


@pytest.fixture
def scene(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "secret.txt").write_text("do not serve me")
    path = folder / "my scene.cgs"
    path.write_bytes(b"\x89CGS\r\n\x1a\n" + bytes(range(200)))
    return path


@pytest.fixture
def server(scene):
    with ViewerServer(scene, port=0).start() as s:
        yield s


def get(server, path: str, method: str = "GET") -> tuple[int, bytes, dict]:
    """One raw request: the path is sent exactly as written (no client-side normalising)."""
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.putrequest(method, path, skip_accept_encoding=True)
    conn.endheaders()
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, body, dict(response.getheaders())


def test_serves_the_page_assets_and_the_file(server, scene):
    status, page, headers = get(server, "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b'<meta name="compgs-file" content="scene/my%20scene.cgs" />' in page
    assert get(server, "/index.html?hud=0")[1] == page
    for asset in (STATIC_DIR / "assets").iterdir():
        status, body, _ = get(server, f"/assets/{asset.name}")
        assert status == 200 and body == asset.read_bytes()
    status, body, headers = get(server, "/scene/my%20scene.cgs")
    assert status == 200 and body == scene.read_bytes()
    assert headers["Content-Type"] == "application/octet-stream"
    status, body, headers = get(server, "/scene/my%20scene.cgs", "HEAD")
    assert (
        status == 200 and body == b"" and int(headers["Content-Length"]) == len(scene.read_bytes())
    )


@pytest.mark.parametrize(
    "path",
    [
        "/../../etc/passwd",
        "/scene/../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/scene/%2e%2e/secret.txt",
        "/scene/secret.txt",
        "/scene/../secret.txt",
        "/scene/my%20scene.cgs/..",
        "/scene/my%20scene.cgs%00",
        "/assets/../index.html",
        "/assets/",
        "/static/index.html",
        "//etc/passwd",
        "/scene/",
        "/favicon.ico",
        str(STATIC_DIR / "index.html"),
    ],
)
def test_everything_else_is_404(server, path):
    assert get(server, path)[0] == 404


def test_other_methods_are_refused(server):
    assert get(server, "/", "POST")[0] == 501


def test_binds_loopback_by_default(scene):
    assert inspect.signature(view).parameters["host"].default == "127.0.0.1"
    assert inspect.signature(ViewerServer).parameters["host"].default == "127.0.0.1"
    with ViewerServer(scene, port=0) as server:
        assert server.server_address[0] == "127.0.0.1"
        assert server.url.startswith("http://127.0.0.1:")


def test_busy_port_and_missing_file(scene, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(InputError, match=f"cannot listen on 127.0.0.1:{port}.*--port 0"):
            ViewerServer(scene, port=port)
    with pytest.raises(InputError, match="no such file"):
        ViewerServer(tmp_path / "missing.cgs", port=0)
    with pytest.raises(InputError, match="not a file"):
        ViewerServer(tmp_path, port=0)


def test_the_file_is_read_per_request(server, scene):
    scene.write_bytes(b"\x89CGS\r\n\x1a\nnew")
    assert get(server, "/scene/my%20scene.cgs")[1] == b"\x89CGS\r\n\x1a\nnew"
    scene.unlink()
    assert get(server, "/scene/my%20scene.cgs")[0] == 404

"""The viewer in headless Chromium (WebGL through SwiftShader): decode, render, report errors.

(a) the page's Gaussian count and per-field checksums equal the Python reader's;
(b) a screenshot from a fixed camera matches the project's renderer (PSNR >= 20 dB).
"""

from __future__ import annotations

import base64
import http.server
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from compgs import io
from compgs.view import ViewerServer, export_html
from tests.view.reference import (
    camera_json,
    cgs_summary,
    field_checksums,
    png_to_array,
    psnr,
    reference_image,
)
from tests.view.scene import scene_camera

ROOT = Path(__file__).resolve().parents[2]
LOAD_TIMEOUT_MS = 60_000
# Frames to draw after the camera is set: Spark sorts in a worker, a few frames behind.
SETTLE_FRAMES = 12

pytestmark = pytest.mark.slow


def wait_loaded(page) -> dict:
    page.wait_for_function(
        "window.compgs && ['ready', 'error'].includes(window.compgs.state.status)",
        timeout=LOAD_TIMEOUT_MS,
    )
    return page.evaluate("window.compgs.state")


def screenshot_from(page, cameras):
    page.evaluate("camera => window.compgs.setCamera(camera)", camera_json(cameras))
    page.wait_for_function(f"window.compgs.frames() >= {SETTLE_FRAMES}", timeout=LOAD_TIMEOUT_MS)
    return png_to_array(page.locator("#view canvas").screenshot())


@pytest.fixture
def served():
    """Serve one file with the in-process server; yields a function path -> URL."""
    servers = []

    def serve(path: Path) -> str:
        servers.append(ViewerServer(path, port=0).start())
        return servers[-1].url + "?hud=0"

    yield serve
    for server in servers:
        server.close()


def test_compgs_view_cgs(page, scene_files):
    """`compgs view` on a .cgs: the page decodes it like Python and draws the right image."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "compgs",
            "view",
            str(scene_files["cgs"]),
            "--port",
            "0",
            "--no-browser",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert "http://127.0.0.1:" in line, line
        url = line.split(" at ")[1].split()[0]
        page.goto(url + "?hud=0")
        state = wait_loaded(page)
        assert state["status"] == "ready", state
        want = cgs_summary(scene_files["cgs"].read_bytes(), "scene.cgs")
        got = state["summary"]
        assert got["count"] == want["count"] > 3000
        assert got["checksums"] == want["checksums"]
        assert got["sections"] == want["sections"]
        shot = screenshot_from(page, scene_camera())
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert shot.std() > 20, "blank canvas"
    expected = reference_image(io.load(scene_files["cgs"]), scene_camera())
    value = psnr(shot, expected)
    assert value >= 20.0, value


@pytest.mark.parametrize("fmt", ["ply", "splat", "spz"])
def test_other_formats(page, scene_files, served, fmt):
    page.goto(served(scene_files[fmt]))
    state = wait_loaded(page)
    assert state["status"] == "ready", state
    splats = io.load(scene_files[fmt])
    assert state["summary"]["format"] == fmt
    assert state["summary"]["count"] == splats.num_gaussians
    assert state["summary"]["shDegree"] == splats.sh_degree
    assert state["summary"]["checksums"] == field_checksums(splats)
    shot = screenshot_from(page, scene_camera())
    value = psnr(shot, reference_image(splats, scene_camera()))
    assert value >= 20.0, value


def test_corrupt_cgs_shows_the_error(page, scene_files, served):
    page.goto(served(scene_files["corrupt"]))
    state = wait_loaded(page)
    assert state["status"] == "error"
    want = cgs_summary(scene_files["corrupt"].read_bytes(), "corrupt.cgs")
    assert not want["ok"]
    message = page.locator("#message")
    assert message.is_visible()
    assert want["error"] in message.inner_text()  # same words as the Python reader
    assert "CorruptFileError" in message.inner_text()


def test_unsupported_file_shows_the_error(page, tmp_path, served):
    path = tmp_path / "notes.txt"
    path.write_text("not a splat file\n")
    page.goto(served(path))
    state = wait_loaded(page)
    assert state["status"] == "error"
    assert "UnsupportedFormatError: notes.txt: content does not look like any known format" in (
        page.locator("#message").inner_text()
    )


def test_exported_folder_works_from_a_plain_static_server(page, scene_files, tmp_path):
    out = tmp_path / "site"
    export_html(scene_files["cgs"], out)
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(out), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        page.goto(f"http://127.0.0.1:{server.server_address[1]}/index.html")
        state = wait_loaded(page)
    finally:
        server.shutdown()
        server.server_close()
    assert state["status"] == "ready", state
    want = cgs_summary(scene_files["cgs"].read_bytes(), "scene.cgs")
    assert state["summary"]["checksums"] == want["checksums"]
    assert page.locator("#stat-count").inner_text() == f"{want['count']:,}"


def test_file_picker_drag_and_drop_and_controls(page, scene_files, served, tmp_path):
    """Open by picker, then by dropping a file; orbit by dragging, toggle fly, reset the view."""
    page.goto(served(scene_files["cgs"]).replace("?hud=0", ""))
    assert wait_loaded(page)["status"] == "ready"
    page.set_input_files("#picker", str(scene_files["spz"]))
    page.wait_for_function("window.compgs.state.file === 'scene.spz'")
    state = wait_loaded(page)
    assert state["status"] == "ready" and state["summary"]["format"] == "spz"
    assert page.locator("#stat-file").inner_text() == "scene.spz"

    data = base64.b64encode(scene_files["ply"].read_bytes()).decode()
    page.evaluate(
        """b64 => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], "dropped.ply"));
            window.dispatchEvent(new DragEvent("drop", { dataTransfer: transfer }));
        }""",
        data,
    )
    page.wait_for_function("window.compgs.state.file === 'dropped.ply'")
    state = wait_loaded(page)
    assert state["status"] == "ready" and state["summary"]["format"] == "ply"
    page.wait_for_function("document.getElementById('stat-frame').textContent.includes('fps')")
    for stat in ("count", "bits", "decode", "frame"):
        assert page.locator(f"#stat-{stat}").inner_text() not in ("", "-"), stat

    page.evaluate("document.body.classList.add('nohud')")  # the panel would be in the shots
    canvas = page.locator("#view canvas")
    page.wait_for_function(f"window.compgs.frames() >= {SETTLE_FRAMES}")
    before = png_to_array(canvas.screenshot())
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.8, box["y"] + box["height"] / 2, steps=8)
    page.mouse.up()
    frames = page.evaluate("window.compgs.frames()")
    page.wait_for_function(f"window.compgs.frames() >= {frames + SETTLE_FRAMES}")
    after = png_to_array(canvas.screenshot())
    assert psnr(before, after) < 25, "dragging did not move the camera"

    page.keyboard.press("f")
    assert page.locator("#mode").inner_text() == "fly"
    page.keyboard.press("f")
    assert page.locator("#mode").inner_text() == "orbit"
    page.keyboard.press("r")
    frames = page.evaluate("window.compgs.frames()")
    page.wait_for_function(f"window.compgs.frames() >= {frames + SETTLE_FRAMES}")
    assert psnr(before, png_to_array(canvas.screenshot())) > 35, "reset did not refit the view"


def test_a_cgs_made_from_the_embedded_default_scene(page, served, tmp_path):
    """The embedded default scene (compgs generate-scene) as Gaussians on its initial point
    cloud, compressed with `compress_splats`: the page decodes what Python decodes and
    draws what the project's renderer draws from one of the scene's own cameras."""
    import torch

    from compgs.data import load_scene
    from compgs.data.cameras import Cameras
    from compgs.data.synthetic import generate
    from compgs.quantize import compress_splats
    from compgs.splats import Splats, rgb_to_sh0
    from tests.view.scene import HEIGHT, WIDTH

    scene = load_scene(generate(tmp_path / "scene", num_views=8), test_every=0)
    means = scene.points.float()
    nearest = torch.cdist(means, means).fill_diagonal_(float("inf")).min(dim=1).values
    n = len(means)
    splats = Splats(
        means=means, quats=torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(n, 1),
        scales=(0.8 * nearest).clamp(min=1e-4).log()[:, None].repeat(1, 3),
        opacities=torch.full((n,), 2.0), sh0=rgb_to_sh0(scene.point_colors.float())[:, None],
        shN=0.02 * torch.randn(n, 3, 3, generator=torch.Generator().manual_seed(0)),
    )  # fmt: skip
    sizes = {"dc": 256, "sh": 64, "scale": 256, "rot": 16}
    path = tmp_path / "default-scene.cgs"
    path.write_bytes(compress_splats(splats, sizes, iters=4).data)

    cam = scene.train[0]  # the scene's own camera, its intrinsics scaled to the page
    K = cam.K[0].clone()
    K[0] *= WIDTH / int(cam.width[0])
    K[1] *= HEIGHT / int(cam.height[0])
    camera = Cameras(K=K[None], camtoworld=cam.camtoworld, width=WIDTH, height=HEIGHT)

    page.goto(served(path))
    state = wait_loaded(page)
    assert state["status"] == "ready", state
    want = cgs_summary(path.read_bytes(), path.name)
    assert state["summary"]["count"] == want["count"] == n
    assert state["summary"]["checksums"] == want["checksums"]
    shot = screenshot_from(page, camera)
    assert shot.std() > 20, "blank canvas"
    value = psnr(shot, reference_image(io.load(path), camera))
    assert value >= 20.0, value

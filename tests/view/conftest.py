"""Fixtures for the viewer tests: a headless Chromium (skipped when absent) and scene files."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from compgs import io
from tests.view.scene import scene_cgs

# WebGL through SwiftShader (no GPU), nothing fetched from the network.
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]


def chromium_path() -> str | None:
    """$COMPGS_CHROMIUM, or Debian's chromium (what .ci/run installs), or another on PATH."""
    if os.environ.get("COMPGS_CHROMIUM"):
        return os.environ["COMPGS_CHROMIUM"]
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    path = chromium_path()
    if path is None:
        pytest.skip("no Chromium found (apt-get install chromium, or set COMPGS_CHROMIUM)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    """A fresh page whose viewport matches the test camera; JS errors fail the test."""
    from tests.view.scene import HEIGHT, WIDTH

    context = browser.new_context(
        viewport={"width": WIDTH, "height": HEIGHT}, device_scale_factor=1
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors: {errors}"


@pytest.fixture(scope="session")
def scene_files(tmp_path_factory) -> dict[str, Path]:
    """The test scene as .cgs (quantized), and its decoded Gaussians as .ply, .splat and .spz."""
    out = tmp_path_factory.mktemp("scene")
    data, _ = scene_cgs()
    files = {"cgs": out / "scene.cgs"}
    files["cgs"].write_bytes(data)
    splats = io.load(files["cgs"])
    for fmt in ("ply", "splat", "spz"):
        files[fmt] = out / f"scene.{fmt}"
        io.save(splats, files[fmt])
    corrupt = bytearray(data)
    corrupt[len(corrupt) // 2] ^= 0x20  # inside a payload: a CRC mismatch
    files["corrupt"] = out / "corrupt.cgs"
    files["corrupt"].write_bytes(bytes(corrupt))
    return files

"""`compgs export X --format html -o DIR`: a complete static folder, or nothing."""

from __future__ import annotations

import json

import pytest

from compgs.cli.main import run
from compgs.errors import InputError, UnsupportedFormatError
from compgs.view import export_html
from compgs.view.export import MANIFEST
from compgs.view.server import STATIC_DIR


@pytest.fixture
def cgs_file(tmp_path):
    from compgs.codec import encode
    from tests.codec.helpers import random_quantized

    splats, codebooks, assignments = random_quantized(50)
    path = tmp_path / "scene.cgs"
    path.write_bytes(encode(splats, codebooks, assignments))
    return path


def test_export_writes_viewer_and_scene(cgs_file, tmp_path):
    out = tmp_path / "site"
    index = export_html(cgs_file, out)
    assert index == out / "index.html"
    assert '<meta name="compgs-file" content="scene.cgs" />' in index.read_text()
    assert (out / "scene.cgs").read_bytes() == cgs_file.read_bytes()
    for asset in (STATIC_DIR / "assets").iterdir():
        assert (out / "assets" / asset.name).read_bytes() == asset.read_bytes()
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["scene"] == "scene.cgs" and manifest["format"] == "cgs"
    assert manifest["bytes"] == cgs_file.stat().st_size
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["assets", "index.html", "scene.cgs", MANIFEST]
    )
    assert not list(tmp_path.glob(".site*"))  # no temporary folder left behind


def test_export_replaces_an_earlier_export_but_not_other_folders(cgs_file, tmp_path):
    out = tmp_path / "site"
    export_html(cgs_file, out)
    (out / "stale.txt").write_text("from an old export")
    export_html(cgs_file, out)
    assert not (out / "stale.txt").exists()
    other = tmp_path / "documents"
    other.mkdir()
    (other / "thesis.tex").write_text("precious")
    with pytest.raises(InputError, match="not an earlier export"):
        export_html(cgs_file, other)
    assert (other / "thesis.tex").read_text() == "precious"
    empty = tmp_path / "empty"
    empty.mkdir()
    export_html(cgs_file, empty)
    assert (empty / "index.html").is_file()


def test_export_refuses_what_the_viewer_cannot_read(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello\n")
    with pytest.raises(UnsupportedFormatError):
        export_html(notes, tmp_path / "site")
    with pytest.raises(InputError, match="no such file"):
        export_html(tmp_path / "missing.cgs", tmp_path / "site")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_export_cli(cgs_file, tmp_path, capsys):
    out = tmp_path / "site"
    run(["export", str(cgs_file), "--format", "html", "-o", str(out)])
    assert (out / "index.html").is_file() and (out / "scene.cgs").is_file()
    assert f"wrote {out}/" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        run(["export", str(cgs_file), "--format", "zip", "-o", str(out)])

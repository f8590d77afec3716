import tracemalloc

import numpy as np
import plyfile
import pytest
import torch

from compgs import io
from compgs.errors import CorruptFileError
from compgs.io.ply import ply_property_names, read_ply, write_ply
from compgs.splats import FIELDS, Splats


def assert_splats_equal(a: Splats, b: Splats) -> None:
    for name in FIELDS:
        assert torch.equal(getattr(a, name), getattr(b, name)), name


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_round_trip_is_bit_exact(tmp_path, degree):
    s = Splats.random(257, sh_degree=degree, seed=degree)
    p1, p2 = tmp_path / "a.ply", tmp_path / "b.ply"
    write_ply(s, p1)
    back = read_ply(p1)
    assert_splats_equal(back, s)
    write_ply(back, p2)
    assert p1.read_bytes() == p2.read_bytes()


def test_inria_layout(tmp_path):
    s = Splats.random(10, sh_degree=3)
    path = tmp_path / "x.ply"
    write_ply(s, path)
    ply = plyfile.PlyData.read(str(path))
    names = [p.name for p in ply["vertex"].properties]
    assert names == ply_property_names(3) and len(names) == 62
    assert all(p.val_dtype in ("f4", "<f4", "float32") for p in ply["vertex"].properties)
    header_len = path.read_bytes().index(b"end_header\n") + len(b"end_header\n")
    assert path.stat().st_size - header_len == 248 * 10
    # f_rest is channel-major: f_rest_{c*15 + j} holds band coefficient j of channel c.
    v = ply["vertex"]
    assert np.float32(v["f_rest_16"][3]) == s.shN[3, 1, 1].item()
    assert np.float32(v["f_rest_44"][7]) == s.shN[7, 14, 2].item()
    assert np.float32(v["rot_0"][2]) == s.quats[2, 0].item()  # w first


def _write_custom(path, columns: dict[str, np.ndarray], byte_order="<", text=False, dtype="f4"):
    n = len(next(iter(columns.values())))
    arr = np.empty(n, dtype=[(k, dtype) for k in columns])
    for k, v in columns.items():
        arr[k] = v
    plyfile.PlyData(
        [plyfile.PlyElement.describe(arr, "vertex")], text=text, byte_order=byte_order
    ).write(str(path))


def _columns(s: Splats, drop=()) -> dict[str, np.ndarray]:
    a = s.numpy()
    n = s.num_gaussians
    cols = {}
    for i, c in enumerate("xyz"):
        cols[c] = a["means"][:, i]
    for i in range(3):
        cols[f"f_dc_{i}"] = a["sh0"][:, 0, i]
    rest = a["shN"].transpose(0, 2, 1).reshape(n, -1)
    for i in range(rest.shape[1]):
        cols[f"f_rest_{i}"] = rest[:, i]
    cols["opacity"] = a["opacities"]
    for i in range(3):
        cols[f"scale_{i}"] = a["scales"][:, i]
    for i in range(4):
        cols[f"rot_{i}"] = a["quats"][:, i]
    return {k: v for k, v in cols.items() if k not in drop}


@pytest.mark.parametrize(
    "kwargs", [{}, {"byte_order": ">"}, {"text": True}, {"dtype": "f8"}], ids=str
)
def test_reads_other_writers(tmp_path, kwargs):
    """No normals, big-endian, ASCII and double-precision files all read."""
    s = Splats.random(20, sh_degree=1, seed=3)
    path = tmp_path / "other.ply"
    _write_custom(path, _columns(s), **kwargs)
    back = read_ply(path)
    for name in FIELDS:
        torch.testing.assert_close(getattr(back, name), getattr(s, name), rtol=1e-6, atol=1e-6)


def test_missing_property_named(tmp_path):
    path = tmp_path / "no_opacity.ply"
    _write_custom(path, _columns(Splats.random(5), drop=("opacity", "rot_2")))
    with pytest.raises(CorruptFileError, match=r"missing required 3DGS properties: opacity, rot_2"):
        read_ply(path)


def test_truncated(tmp_path):
    path = tmp_path / "t.ply"
    write_ply(Splats.random(100), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 7])
    with pytest.raises(CorruptFileError, match="truncated PLY"):
        io.load(path)


def test_huge_declared_count_does_not_allocate(tmp_path):
    path = tmp_path / "huge.ply"
    write_ply(Splats.random(3), path)
    data = path.read_bytes().replace(b"element vertex 3\n", b"element vertex 90000000000\n")
    path.write_bytes(data)
    tracemalloc.start()
    with pytest.raises(CorruptFileError, match="truncated PLY"):
        read_ply(path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1 << 20


def test_not_a_ply_and_nan(tmp_path):
    path = tmp_path / "x.ply"
    path.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 1\n")
    with pytest.raises(CorruptFileError, match="no 'ply' magic or no end_header"):
        read_ply(path)
    s = Splats.random(4)
    cols = _columns(s)
    cols["scale_1"][2] = np.nan
    _write_custom(path, cols)
    with pytest.raises(CorruptFileError, match="non-finite"):
        read_ply(path)


def test_incomplete_sh_set(tmp_path):
    path = tmp_path / "x.ply"
    _write_custom(path, _columns(Splats.random(4, sh_degree=1), drop=("f_rest_8",)))
    with pytest.raises(CorruptFileError, match="f_rest"):
        read_ply(path)

"""The live training view (viser): what it sends, when, and that a browser client gets it."""

from __future__ import annotations

import math
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from compgs.splats import Splats
from tests.view.scene import scene_camera

viser = pytest.importorskip("viser", reason="viser (the live view) is not installed")

from compgs.view.live import LiveView  # noqa: E402


@pytest.fixture
def live():
    view = LiveView(port=0, every=5, metrics_interval=0.0)
    yield view
    view.close()


def decode_buffer(buffer: np.ndarray):
    """viser's 32-byte splat records -> centres, covariance upper triangles, RGBA bytes."""
    raw = np.ascontiguousarray(buffer).view(np.uint8).reshape(len(buffer), 32)
    centers = raw[:, :12].copy().view(np.float32)
    cov = raw[:, 16:28].copy().view(np.float16).astype(np.float64)
    return centers, cov, raw[:, 28:32]


def test_sends_gaussians_as_viser_splats(live):
    splats = Splats.random(500, sh_degree=1, seed=3)
    live.update(7, splats, {"psnr": 21.5, "loss": 0.125})
    centers, cov, rgba = decode_buffer(live._splats.buffer)
    assert np.array_equal(centers, splats.means.numpy())
    q = torch.nn.functional.normalize(splats.quats, dim=1).double()
    R = _rotmats(q)
    full = R @ torch.diag_embed(splats.scales.double().exp() ** 2) @ R.transpose(1, 2)
    want = full.reshape(-1, 9)[:, [0, 1, 2, 4, 5, 8]].numpy()
    assert np.allclose(cov, want, rtol=2e-3, atol=1e-7)
    rgb = (splats.dc_colors().clamp(0, 1) * 255).numpy()
    assert np.abs(rgba[:, :3] - rgb).max() <= 1.0
    alpha = (splats.activated_opacities() * 255).numpy()
    assert np.abs(rgba[:, 3] - alpha).max() <= 1.0
    text = live._status.content
    assert "**step** 7" in text and "**psnr** 21.5" in text and "**loss** 0.125" in text


def _rotmats(q):
    w, x, y, z = q.unbind(-1)
    return torch.stack(
        [
            torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            torch.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            torch.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )


def test_caps_the_number_sent_keeping_the_most_opaque(live):
    live.max_gaussians = 100
    splats = Splats.random(400, seed=1)
    live.update(1, splats)
    centers, _, _ = decode_buffer(live._splats.buffer)
    kept = torch.topk(splats.opacities, 100).indices
    assert np.array_equal(np.sort(centers[:, 0]), np.sort(splats.means[kept, 0].numpy()))


def test_cameras_become_frusta(live):
    cameras = scene_camera()
    live.show_cameras(cameras)
    (frustum,) = live._frusta
    c2w = cameras.camtoworld[0].double().numpy()
    assert np.allclose(frustum.position, c2w[:3, 3])
    assert np.allclose(viser.transforms.SO3(np.asarray(frustum.wxyz)).as_matrix(), c2w[:3, :3])
    fy, height, width = float(cameras.K[0, 1, 1]), int(cameras.height[0]), int(cameras.width[0])
    assert math.isclose(frustum.fov, 2 * math.atan(height / (2 * fy)))
    assert math.isclose(frustum.aspect, width / height)


class FakeTrainer:
    """What LiveView reads from compgs.train.trainer.Trainer (and nothing else)."""

    def __init__(self, max_steps: int):
        self.step = 0
        self.config = SimpleNamespace(max_steps=max_steps)
        splats = Splats.random(50, seed=0)
        self.model = SimpleNamespace(splats=lambda: splats, num_gaussians=50)
        cameras = scene_camera()
        self.scene = SimpleNamespace(
            cameras=lambda split: cameras, up=torch.tensor([0.0, -1.0, 0.0])
        )


def test_as_a_trainer_hook(live):
    trainer = FakeTrainer(max_steps=12)
    sent_at = []
    for step in range(trainer.config.max_steps):
        before = live.updates
        live.after_step(trainer, step)  # the trainer calls hooks before counting the step
        trainer.step += 1
        live.on_step(trainer, {"loss": 1.0 / trainer.step, "psnr": 10.0 + step, "note": "text"})
        if live.updates > before:
            sent_at.append(step)
    assert sent_at == [0, 5, 10, 11]  # every 5 steps, and the last one
    assert len(live._frusta) == 1
    assert "**step** 12" in live._status.content and "**psnr** 21" in live._status.content
    assert "note" not in live._status.content


def test_a_websocket_client_receives_the_splats(live):
    websockets_sync = pytest.importorskip("websockets.sync.client")
    splats = Splats.random(64, seed=5)
    live.update(1, splats)
    marker = splats.means[0].numpy().tobytes()
    url = f"ws://127.0.0.1:{live.server.get_port()}"
    received = b""
    with websockets_sync.connect(url, subprotocols=[f"viser-v{viser.__version__}"]) as ws:
        deadline = time.monotonic() + 10
        while marker not in received and time.monotonic() < deadline:
            try:
                message = ws.recv(timeout=1)
            except TimeoutError:
                continue
            received += message if isinstance(message, bytes) else message.encode()
    assert marker in received


def test_binds_loopback_by_default(live):
    assert live.url.startswith("http://127.0.0.1:")


@pytest.mark.slow
def test_with_the_real_trainer(tmp_path):
    """LiveView as a hook of compgs.train.Trainer, and on_step as its per-step callback."""
    from compgs.data import load_scene
    from compgs.data.synthetic import generate
    from compgs.train.config import TrainConfig
    from compgs.train.trainer import Trainer

    data = generate(tmp_path / "tiny", width=48, height=36, num_views=6, num_points=400)
    scene = load_scene(data, test_every=3)
    config = TrainConfig(
        data=data, max_steps=12, backend="cpu", checkpoint_every=0, sh_degree=1, test_every=3
    )
    live = LiveView(port=0, every=5, metrics_interval=0.0)
    try:
        trainer = Trainer(config, scene, hooks=[live])
        trainer.fit(live.on_step)
        assert live.updates == 4  # steps 0, 5, 10 and the last
        assert len(live._frusta) == scene.num_images("train")
        centers, _, _ = decode_buffer(live._splats.buffer)
        assert np.array_equal(centers, trainer.model.splats().means.detach().numpy())
        text = live._status.content
        assert "**step** 12" in text and "**psnr**" in text and "**loss**" in text
    finally:
        live.close()

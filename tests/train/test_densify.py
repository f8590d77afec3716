import torch

from compgs.splats import FIELDS, Splats
from compgs.train.densify import Densifier, DensifyConfig, quat_to_rotmat
from compgs.train.model import GaussianModel

LRS = {name: 1e-2 for name in FIELDS}


def trained_model(n=50, steps=3):
    """A model whose Adam moments are non-zero (a few steps on a dummy loss)."""
    model = GaussianModel(Splats.random(n, sh_degree=1, seed=1), LRS)
    for _ in range(steps):
        s = model.splats()
        loss = sum((getattr(s, f) ** 2).sum() for f in FIELDS)
        model.optimizer.zero_grad()
        loss.backward()
        model.optimizer.step()
    return model


def moments(model):
    return {
        name: {
            k: v.clone()
            for k, v in model.optimizer.state[model.params[name]].items()
            if k != "step"
        }
        for name in FIELDS
    }


def test_clone_split_prune_keep_adam_state_aligned():
    model = trained_model()
    before = moments(model)
    params_before = {k: v.detach().clone() for k, v in model.params.items()}
    d = Densifier(DensifyConfig(), scene_extent=1.0)
    d.grad2d, d.count = torch.arange(50.0), torch.ones(50)

    clone = torch.zeros(50, dtype=torch.bool)
    clone[[3, 7]] = True
    d.clone(model, clone)
    assert model.num_gaussians == 52
    split = torch.zeros(52, dtype=torch.bool)
    split[[0, 51]] = True  # an original and a clone
    d.split(model, split)
    assert model.num_gaussians == 54
    prune = torch.zeros(54, dtype=torch.bool)
    prune[[0, 1]] = True  # originals 1 and 2 (split moved original 0 out)
    d.remove(model, prune)
    n = model.num_gaussians
    assert n == 52 and d.grad2d.shape == (n,)

    # Surviving originals 3..49 come first; then the clone of 3 and 4 split children.
    kept_original = torch.arange(3, 50)
    after = moments(model)
    for name in FIELDS:
        assert model.params[name].shape[0] == n
        for key, m in after[name].items():
            assert m.shape[0] == n, (name, key)
            # kept Gaussians come first, in order, with their moments unchanged
            assert torch.equal(m[: len(kept_original)], before[name][key][kept_original])
            assert torch.all(m[len(kept_original) :] == 0)  # fresh rows start from zero
        assert torch.equal(
            model.params[name][: len(kept_original)].detach(), params_before[name][kept_original]
        )
    # the optimizer still steps on the new parameters
    s = model.splats()
    (s.means**2).sum().backward()
    model.optimizer.step()


def test_split_children_are_smaller_and_near_parent():
    model = GaussianModel(Splats.random(1, sh_degree=0), LRS)
    d = Densifier(DensifyConfig(), 1.0)
    d.grad2d, d.count = torch.zeros(1), torch.zeros(1)
    parent_mean = model.params["means"].detach().clone()
    parent_scale = model.params["scales"].detach().clone()
    d.split(model, torch.ones(1, dtype=torch.bool))
    assert model.num_gaussians == 2
    torch.testing.assert_close(
        model.params["scales"].detach(), (parent_scale - torch.log(torch.tensor(1.6))).repeat(2, 1)
    )
    dist = (model.params["means"].detach() - parent_mean).norm(dim=1)
    assert (dist < 5 * parent_scale.exp().max()).all()


def test_schedule_grows_high_gradient_and_prunes_transparent():
    model = GaussianModel(Splats.random(10, sh_degree=0, seed=2), LRS)
    with torch.no_grad():
        model.params["scales"].fill_(-8.0)  # all small: cloned, not split
        model.params["opacities"].fill_(2.0)
        model.params["opacities"][9] = -10.0  # transparent: pruned
    d = Densifier(DensifyConfig(refine_start=0, refine_every=1, reset_every=0), scene_extent=1.0)
    means2d = torch.zeros(1, 10, 2, requires_grad=True)
    grad = torch.zeros(1, 10, 2)
    grad[0, :3, 0] = 1.0  # three Gaussians with a large gradient
    means2d.grad = grad
    meta = {
        "means2d": means2d,
        "radii": torch.ones(1, 10),
        "width": 64,
        "height": 48,
        "n_cameras": 1,
    }
    changes = d.post_backward(model, 1, meta)
    assert changes == {"cloned": 3, "split": 0, "pruned": 1}
    assert model.num_gaussians == 12


def test_reset_opacity_clamps_and_zeroes_moments():
    model = trained_model()
    Densifier.reset_opacity(model, 0.01)
    assert torch.sigmoid(model.params["opacities"]).max() <= 0.01 + 1e-6
    state = model.optimizer.state[model.params["opacities"]]
    assert all(torch.all(v == 0) for k, v in state.items() if k != "step")


def test_quat_to_rotmat_is_orthonormal():
    R = quat_to_rotmat(torch.randn(20, 4))
    torch.testing.assert_close(
        R @ R.transpose(1, 2), torch.eye(3).expand(20, 3, 3), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(20), atol=1e-5, rtol=0)


def test_checkpoint_round_trip_restores_params_and_moments():
    model = trained_model()
    state = model.state_dict()
    other = GaussianModel(Splats.random(5, sh_degree=1), LRS)
    other.load_state_dict(state)
    for name in FIELDS:
        assert torch.equal(other.params[name].detach(), model.params[name].detach())
    a, b = moments(model), moments(other)
    for name in FIELDS:
        for key in a[name]:
            assert torch.equal(a[name][key], b[name][key])

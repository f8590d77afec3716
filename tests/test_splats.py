import pytest
import torch

from compgs.errors import InputError
from compgs.splats import SH_C0, Splats


def test_shapes_and_degree():
    s = Splats.random(10, sh_degree=2)
    assert s.num_gaussians == 10 and len(s) == 10
    assert s.sh_degree == 2 and s.shN.shape == (10, 8, 3)
    assert s.sh_coeffs().shape == (10, 9, 3)


def test_activations():
    s = Splats.random(5, sh_degree=0)
    torch.testing.assert_close(s.activated_opacities(), 1 / (1 + torch.exp(-s.opacities)))
    torch.testing.assert_close(s.activated_scales(), torch.exp(s.scales))
    torch.testing.assert_close(s.normalized_quats().norm(dim=1), torch.ones(5))
    torch.testing.assert_close(s.dc_colors(), 0.5 + SH_C0 * s.sh0[:, 0])


def test_index_and_cat():
    s = Splats.random(10, sh_degree=1)
    mask = torch.arange(10) % 3 == 0
    sub = s.index(mask)
    assert sub.num_gaussians == 4
    torch.testing.assert_close(sub.means, s.means[mask])
    both = Splats.cat([sub, Splats.random(2, sh_degree=3)])
    assert both.num_gaussians == 6 and both.sh_degree == 3
    assert torch.all(both.shN[:4, 3:] == 0)
    torch.testing.assert_close(both.shN[:4, :3], sub.shN)
    assert s.index([1, 2]).num_gaussians == 2
    with pytest.raises(InputError, match="boolean mask"):
        s.index(torch.ones(3, dtype=torch.bool))


def test_to_and_clone_are_independent():
    s = Splats.random(3)
    c = s.clone()
    c.means += 1
    assert not torch.equal(c.means, s.means)
    assert s.to(dtype=torch.float64).dtype == torch.float64


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("means", torch.zeros(4, 2), "means must have shape"),
        ("opacities", torch.zeros(4, 1), "opacities must have shape"),
        ("shN", torch.zeros(4, 5, 3), "match no SH degree"),
        ("quats", torch.zeros(4, 4, dtype=torch.int32), "floating point"),
        ("sh0", torch.zeros(4, 1, 3, dtype=torch.float64), "share one dtype"),
        ("source_scales", torch.zeros(3, 3), "source_scales must be None or"),
    ],
)
def test_validation_errors(field, value, message):
    fields = Splats.random(4, sh_degree=0).__dict__.copy()
    fields[field] = value
    with pytest.raises(InputError, match=message):
        Splats(**fields)


def test_non_finite_rejected():
    s = Splats.random(4)
    s.scales[2, 1] = float("nan")
    with pytest.raises(InputError, match="scales holds non-finite values in 1 Gaussian.*index 2"):
        s.validate_finite()

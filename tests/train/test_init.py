import torch

from compgs.splats import SH_C0
from compgs.train.init import splats_from_points


def test_gaussians_sit_on_points_with_neighbour_scale():
    grid = (
        torch.stack(torch.meshgrid(*[torch.arange(5.0)] * 3, indexing="ij"), -1).reshape(-1, 3)
        * 0.1
    )
    colors = torch.rand(len(grid), 3)
    s = splats_from_points(grid, colors, sh_degree=2, init_opacity=0.1)
    assert s.num_gaussians == 125 and s.sh_degree == 2
    assert torch.equal(s.means, grid)
    torch.testing.assert_close(0.5 + SH_C0 * s.sh0[:, 0], colors)
    torch.testing.assert_close(s.activated_opacities(), torch.full((125,), 0.1))
    # interior points: 3 nearest neighbours at spacing 0.1
    centre = 62
    torch.testing.assert_close(
        s.activated_scales()[centre], torch.full((3,), 0.1), rtol=1e-4, atol=0
    )
    assert torch.all(s.shN == 0)

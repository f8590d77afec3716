"""Forked children of a process that rendered get a clear error, never a hang."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import os, sys, torch
    from compgs.errors import CompgsError
    from compgs.render import render_views
    from tests.render.scenes import orbit_views, random_scene

    viewmats, Ks = orbit_views(1, 16, 12)
    splats = random_scene(50).to(dtype=torch.float32)
    first = render_views(splats, viewmats, Ks, width=16, height=12, backend="cpu").rgb
    pid = os.fork()
    if pid == 0:
        try:
            again = render_views(splats, viewmats, Ks, width=16, height=12, backend="cpu").rgb
            os._exit(0 if torch.equal(again, first) else 1)
        except CompgsError as error:
            os._exit(3 if "spawn" in str(error) else 1)
    _, status = os.waitpid(pid, 0)
    print(os.waitstatus_to_exitcode(status))
    """
)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_render_in_forked_child_works_or_says_why():
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    # 0: the threading layer is fork-safe (TBB); 3: OpenMP, and the child was told why.
    assert done.stdout.strip() in {"0", "3"}, done.stdout + done.stderr

"""The distance -> coordinates solver: exactness on real poses, gradients, alignment."""

from __future__ import annotations

import math

import numpy as np
import torch

from rdconfvae.geometry import solver


def _dist(x: torch.Tensor) -> torch.Tensor:
    return torch.cdist(x, x)


def test_exact_distances_recover_experimental_poses(ccd_val_poses):
    """All-pairs edges can represent drug-sized conformers: from the exact distances of
    24 held-out CCD poses (10-40 heavy atoms) the solver must come back within 0.2 A
    (median, heavy atoms)."""
    rms = []
    for mol in ccd_val_poses:
        ref = torch.tensor(mol.GetConformer().GetPositions(), dtype=torch.float32)
        n = ref.shape[0]
        d = _dist(ref).expand(4, n, n)
        x = solver.solve(d, torch.ones_like(d), torch.ones(4, n), steps=30)
        r = solver.superpose_rmsd(x, ref.expand(4, n, 3), torch.ones(4, n), allow_reflection=True)
        rms.append(float(r.median()))
    assert len(rms) == 24
    # measured: median 1e-5 A, max 6e-4 A (float32)
    assert np.median(rms) < 0.05
    assert max(rms) < 0.2


def test_noisy_distances_stay_close(ccd_val_poses):
    gen = torch.Generator().manual_seed(0)
    rms = []
    for mol in ccd_val_poses[:10]:
        ref = torch.tensor(mol.GetConformer().GetPositions(), dtype=torch.float32)
        n = ref.shape[0]
        noise = 0.1 * torch.randn(8, n, n, generator=gen)
        d = (_dist(ref) + (noise + noise.transpose(1, 2)) / 2).clamp(min=0)
        x = solver.solve(d, torch.ones_like(d), torch.ones(8, n), steps=30)
        r = solver.superpose_rmsd(x, ref.expand(8, n, 3), torch.ones(8, n), allow_reflection=True)
        rms.append(float(r.median()))
    assert np.median(rms) < 0.3


def test_padding_does_not_move_real_atoms():
    gen = torch.Generator().manual_seed(1)
    ref = torch.randn(6, 3, generator=gen) * 2
    d = torch.zeros(1, 9, 9)
    d[0, :6, :6] = _dist(ref)
    mask = torch.zeros(1, 9)
    mask[0, :6] = 1
    x = solver.solve(d, torch.ones_like(d), mask, steps=20)
    assert torch.all(x[0, 6:] == 0)
    r = solver.superpose_rmsd(x[:, :6], ref[None], torch.ones(1, 6), allow_reflection=True)
    assert float(r) < 1e-3


def test_gradient_flows_through_last_steps():
    gen = torch.Generator().manual_seed(2)
    ref = torch.randn(1, 7, 3, generator=gen) * 2
    d = (_dist(ref[0]) * 1.1).unsqueeze(0).requires_grad_(True)
    x = solver.solve(d, torch.ones_like(d), torch.ones(1, 7), steps=10, grad_steps=2)
    loss = solver.superpose_rmsd(x, ref, torch.ones(1, 7), allow_reflection=True).sum()
    loss.backward()
    assert d.grad is not None and torch.isfinite(d.grad).all() and d.grad.abs().sum() > 0
    # shrinking the (too long) target distances must lower the loss
    with torch.no_grad():
        d2 = d - 0.05 * d.grad / d.grad.abs().max()
        x2 = solver.solve(d2, torch.ones_like(d2), torch.ones(1, 7), steps=10)
        loss2 = solver.superpose_rmsd(x2, ref, torch.ones(1, 7), allow_reflection=True).sum()
    assert loss2 < loss


def test_superpose_rotation_and_mirror():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(1, 10, 3, generator=gen)
    a = math.pi / 5
    rot = torch.tensor([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    y = x @ rot.T + torch.tensor([1.0, -2.0, 3.0])
    mask = torch.ones(1, 10)
    assert float(solver.superpose_rmsd(x, y, mask)) < 1e-4
    mirror = x * torch.tensor([-1.0, 1.0, 1.0])
    assert float(solver.superpose_rmsd(mirror, x, mask)) > 0.1
    assert float(solver.superpose_rmsd(mirror, x, mask, allow_reflection=True)) < 1e-4


def test_stereo_penalty_repairs_a_flipped_centre():
    # a tetrahedral centre with its mirror image as start: the penalty must flip it
    x = torch.tensor([[[0.0, 0, 0], [1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [-0.6, -0.6, -0.6]]])
    idx = torch.tensor([[0, 1, 2, 3]])
    sign = torch.tensor([-1.0])
    assert (
        int(
            solver.stereo_violations(
                x, idx, sign, torch.zeros(0, 4, dtype=torch.long), torch.zeros(0)
            )[0]
        )
        == 1
    )
    d = torch.cdist(x[0], x[0]).unsqueeze(0)
    fixed = solver.stereo_penalty_refine(
        x,
        d,
        torch.ones_like(d),
        torch.ones(1, 5),
        idx,
        sign,
        torch.zeros(0, 4, dtype=torch.long),
        torch.zeros(0),
    )
    assert float(solver.signed_volumes(fixed, idx)[0, 0]) < 0


def _noisy_problem(m: int = 6, n: int = 12) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(3)
    ref = torch.randn(n, 3, generator=gen) * 2.0
    d = _dist(ref).expand(m, n, n) * (1.0 + 0.05 * torch.randn(m, n, n, generator=gen))
    d = 0.5 * (d + d.transpose(1, 2))
    w = torch.ones(m, n, n)
    mask = torch.ones(m, n)
    x = solver.solve(d, w, mask, steps=5)
    return x, d, w, mask


def test_stress_polish_treats_each_conformer_on_its_own():
    """A conformer polished alone ends where it ends in the batch (one L-BFGS on the
    summed stress shared its line search between them, so the batch changed it)."""
    x, d, w, mask = _noisy_problem()
    batch = solver.polish(x, d, w, mask, iters=30)
    alone = solver.polish(x[3:4], d[3:4], w[3:4], mask[3:4], iters=30)
    assert torch.allclose(batch[3], alone[0], atol=1e-5)
    before = solver.stress(x, d, w * solver._pair_mask(mask), mask)
    after = solver.stress(batch, d, w * solver._pair_mask(mask), mask)
    assert (after < before).all()


def test_inference_does_not_import_torch_dynamo():
    """torch.optim's optimisers import torch._dynamo when first built (seconds on a first
    call); a first embed, stereo repair included, must not reach it."""
    import subprocess
    import sys

    code = (
        "import sys; import rdconfvae; from rdkit import Chem; "
        "from rdconfvae.geometry import solver; import torch; "
        "x = torch.tensor([[[0.0, 0, 0], [1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]]]); "
        "d = torch.cdist(x[0], x[0]).unsqueeze(0); "
        "solver.stereo_penalty_refine(x, d, torch.ones_like(d), torch.ones(1, 4), "
        "torch.tensor([[0, 1, 2, 3]]), torch.tensor([-1.0]), "
        "torch.zeros(0, 4, dtype=torch.long), torch.zeros(0)); "
        "solver.polish(x, d, torch.ones_like(d), torch.ones(1, 4), iters=5); "
        "rdconfvae.embed(Chem.MolFromSmiles('C[C@H](N)C(=O)O'), n=2, seed=1); "
        "print('torch._dynamo' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_written_out_stress_gradient_equals_autograd():
    x, d, w, mask = _noisy_problem()
    wm = w * solver._pair_mask(mask)
    z = x.double().requires_grad_(True)
    value = solver.stress(z, d.double(), wm.double(), mask.double())
    (grad,) = torch.autograd.grad(value.sum(), z)
    v2, g2 = solver._stress_and_grad(x.double(), d.double(), wm.double())
    assert torch.allclose(value, v2, atol=1e-10)
    assert torch.allclose(grad, g2, atol=1e-10)


def test_stereo_repair_treats_each_conformer_on_its_own():
    """The stereo repair of one conformer does not depend on the others in its chunk (the
    worker count changes the chunks' company, not the coordinates), and it fixes the
    mirrored centre of every conformer."""
    x, d, w, mask = _noisy_problem()
    idx = torch.tensor([[0, 1, 2, 3]])
    sign = -torch.sign(solver.signed_volumes(x, idx))[:, 0]  # every conformer's mirror hand
    none = (torch.zeros(0, 4, dtype=torch.long), torch.zeros(6, 0))
    batch = solver.stereo_penalty_refine(x, d, w, mask, idx, sign[:, None], *none)
    alone = solver.stereo_penalty_refine(
        x[2:3], d[2:3], w[2:3], mask[2:3], idx, sign[2:3, None], none[0], none[1][2:3]
    )
    assert (solver.signed_volumes(batch, idx)[:, 0] * sign > 0).all()
    assert torch.allclose(batch[2], alone[0], atol=1e-5)

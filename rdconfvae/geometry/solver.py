"""Inner problem of the bilevel model: coordinates from pairwise distances (pure torch).

    R = argmin_R  sum_{i<j} w_ij (|r_i - r_j| - d_ij)^2

solved by classical multidimensional scaling (MDS, a closed-form start from the
full distance matrix) followed by SMACOF majorization steps, which decrease the
weighted stress monotonically without a step size. The SMACOF update is a
differentiable function of ``d``: training backpropagates through its last
steps (the truncated bilevel gradient of the paper), with the MDS start and the
earlier steps treated as constants.

Distances are mirror-blind; :func:`stereo_penalty_refine` adds signed-volume and
cis/trans hinge terms to repair stereo that the distances did not fix.

Units: Angstrom. Shapes glossary: M conformers (molecules x samples), N atoms
(padded), C chiral centres, S stereo double-bond quadruples.
Padded atoms have ``mask == 0``, zero weights and stay at the origin.
"""

from __future__ import annotations

import torch

from rdconfvae.geometry import minimizers

__all__ = [
    "classical_mds",
    "smacof",
    "solve",
    "stress",
    "signed_volumes",
    "cis_trans_cos",
    "stereo_violations",
    "stereo_penalty_refine",
    "superpose_rmsd",
    "stress_weights",
    "polish",
    "solve_pairs",
    "dense_pairs",
]

_EPS = 1e-9


def _pair_mask(mask: torch.Tensor) -> torch.Tensor:
    """(M, N) atom mask -> (M, N, N) mask of valid off-diagonal pairs."""
    m = mask.unsqueeze(-1) * mask.unsqueeze(-2)
    eye = torch.eye(mask.shape[-1], dtype=mask.dtype, device=mask.device)
    return m * (1.0 - eye)


def classical_mds(dist: torch.Tensor, mask: torch.Tensor, dim: int = 3) -> torch.Tensor:
    """Classical MDS embedding of a (possibly non-Euclidean) distance matrix.

    Shapes:
        dist: (M, N, N) symmetric distances, Angstrom
        mask: (M, N) 1 for real atoms
        returns: (M, N, dim) coordinates centred at the origin
    """
    pm = _pair_mask(mask)
    d2 = (dist * dist) * pm
    n = mask.sum(-1).clamp(min=1.0)  # (M,)
    row = d2.sum(-1) / n.unsqueeze(-1)  # (M, N)
    tot = row.sum(-1) / n  # (M,)
    gram = -0.5 * (d2 - row.unsqueeze(-1) - row.unsqueeze(-2) + tot[:, None, None])
    gram = gram * (mask.unsqueeze(-1) * mask.unsqueeze(-2))
    evals, evecs = torch.linalg.eigh(gram.double())
    top = evals[:, -dim:].clamp(min=0.0).sqrt()  # ascending order: last ones are largest
    x = (evecs[:, :, -dim:] * top.unsqueeze(1)).to(dist.dtype)
    if x.shape[-1] < dim:  # fewer atoms than dimensions (2 atoms): zero extra coordinates
        x = torch.nn.functional.pad(x, (0, dim - x.shape[-1]))
    return x * mask.unsqueeze(-1)


def _smacof_inverse(weight: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Moore-Penrose inverse of the weighted Laplacian V on the valid atoms."""
    lap = torch.diag_embed(weight.sum(-1)) - weight
    ones = mask.unsqueeze(-1) * mask.unsqueeze(-2) / mask.sum(-1).clamp(min=1.0)[:, None, None]
    pad = torch.diag_embed(1.0 - mask)
    inv = torch.linalg.inv(lap + ones + pad)
    return inv - ones


def _smacof_step(
    x: torch.Tensor, dist: torch.Tensor, weight: torch.Tensor, vinv: torch.Tensor
) -> torch.Tensor:
    diff = x.unsqueeze(-2) - x.unsqueeze(-3)  # (M, N, N, 3)
    cur = diff.pow(2).sum(-1).add(_EPS).sqrt()
    b = -weight * dist / cur
    b = b - torch.diag_embed(b.sum(-1))
    return vinv @ (b @ x)


def smacof(
    x: torch.Tensor,
    dist: torch.Tensor,
    weight: torch.Tensor,
    mask: torch.Tensor,
    steps: int,
) -> torch.Tensor:
    """``steps`` SMACOF majorization updates of the weighted stress.

    Shapes:
        x: (M, N, 3) start, dist: (M, N, N) targets, weight: (M, N, N) >= 0,
        mask: (M, N); returns (M, N, 3)
    """
    w = weight * _pair_mask(mask)
    vinv = _smacof_inverse(w.detach(), mask)
    for _ in range(steps):
        x = _smacof_step(x, dist, w, vinv)
    return x


def stress(x: torch.Tensor, dist: torch.Tensor, weight: torch.Tensor, mask: torch.Tensor):
    """Weighted stress per conformer, (M,): sum_{i<j} w_ij (|r_i - r_j| - d_ij)^2."""
    diff = x.unsqueeze(-2) - x.unsqueeze(-3)
    cur = diff.pow(2).sum(-1).add(_EPS).sqrt()
    return 0.5 * (weight * _pair_mask(mask) * (cur - dist).pow(2)).sum((-1, -2))


def solve(
    dist: torch.Tensor,
    weight: torch.Tensor,
    mask: torch.Tensor,
    steps: int = 30,
    grad_steps: int = 0,
) -> torch.Tensor:
    """MDS start + ``steps`` SMACOF updates; the last ``grad_steps`` carry gradients to dist.

    Shapes: dist, weight (M, N, N); mask (M, N); returns (M, N, 3), Angstrom.
    """
    with torch.no_grad():
        x = classical_mds(dist.detach(), mask)
        x = smacof(x, dist.detach(), weight.detach(), mask, max(steps - grad_steps, 0))
    if grad_steps > 0:
        x = smacof(x, dist, weight.detach(), mask, grad_steps)
    return x


def signed_volumes(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Signed volume (r1 - r0) . ((r2 - r0) x (r3 - r0)) per chiral centre, Angstrom^3.

    r0 is the centre itself, or with a fifth column that is not the centre (a fourth
    neighbour), the centroid of the four neighbours. A centre with four neighbours then
    takes its hand from their arrangement: a centre pushed through a face of its
    neighbours' tetrahedron has, seen from itself, the opposite sign, and a repair that
    judged it from there would "fix" it by pushing it out, leaving the neighbours in the
    wrong hand (seen on steroids: 70 % of conformers lost after the polish). Seen from
    inside the tetrahedron both signs agree and the magnitudes are close.

    Shapes: x (M, N, 3); idx (C, 4) = centre, n1, n2, n3 or (C, 5) with n4 (or the centre
    again); returns (M, C).
    """
    c = x[:, idx[:, 0]]
    if idx.shape[1] > 4:
        four = idx[:, 4] != idx[:, 0]
        if bool(four.any()):
            centroid = (x[:, idx[:, 1]] + x[:, idx[:, 2]] + x[:, idx[:, 3]] + x[:, idx[:, 4]]) / 4
            c = torch.where(four[None, :, None], centroid, c)
    a = x[:, idx[:, 1]] - c
    b = x[:, idx[:, 2]] - c
    d = x[:, idx[:, 3]] - c
    return (a * torch.cross(b, d, dim=-1)).sum(-1)


def cis_trans_cos(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """cos of the a-b=c-d dihedral: > 0 cis, < 0 trans. idx (S, 4); returns (M, S)."""
    b = x[:, idx[:, 1]]
    c = x[:, idx[:, 2]]
    axis = c - b
    axis = axis / axis.norm(dim=-1, keepdim=True).clamp(min=_EPS)
    u = x[:, idx[:, 0]] - b
    v = x[:, idx[:, 3]] - c
    u = u - (u * axis).sum(-1, keepdim=True) * axis
    v = v - (v * axis).sum(-1, keepdim=True) * axis
    return (u * v).sum(-1) / (u.norm(dim=-1) * v.norm(dim=-1)).clamp(min=_EPS)


def stereo_violations(
    x: torch.Tensor,
    chiral_idx: torch.Tensor,
    chiral_sign: torch.Tensor,
    dbl_idx: torch.Tensor,
    dbl_cis: torch.Tensor,
    volume_margin: float = 0.0,
    cos_margin: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Number of wrong tetrahedral centres and wrong double bonds per conformer, (M,) each.

    A centre counts as wrong when its signed volume (Angstrom^3, ~2.5 for a tetrahedral
    carbon) times the declared sign is at most ``volume_margin``; a double bond when its
    cos(dihedral) times the declared sign is at most ``cos_margin``. With margins > 0,
    nearly flat centres and nearly perpendicular double bonds count too: their stereo is
    right but any later force-field step can push them through."""
    wrong_c = (signed_volumes(x, chiral_idx) * chiral_sign <= volume_margin).sum(-1)
    wrong_d = (cis_trans_cos(x, dbl_idx) * dbl_cis <= cos_margin).sum(-1)
    return wrong_c, wrong_d


def stereo_penalty_refine(
    x: torch.Tensor,
    dist: torch.Tensor,
    weight: torch.Tensor,
    mask: torch.Tensor,
    chiral_idx: torch.Tensor,
    chiral_sign: torch.Tensor,
    dbl_idx: torch.Tensor,
    dbl_cis: torch.Tensor,
    steps: int = 200,
    lr: float = 0.05,
    volume_margin: float = 1.0,
    cos_margin: float = 0.5,
    check_every: int = 10,
    finish_iters: int = 20,
) -> torch.Tensor:
    """Minimise stress + hinge penalties on wrong chiral volumes and wrong cis/trans.

    Adam on the coordinates pushes the wrong centres through (it stops early once
    every conformer meets every margin, checked each ``check_every`` steps: most
    need a few dozen of the ``steps``); an L-BFGS finish on the same objective
    then relaxes the distortion Adam leaves. Returns detached (M, N, 3). Used on
    the few conformers whose stereo the distances did not fix; the caller
    re-checks the stereo of the result.
    """
    w = (weight * _pair_mask(mask)).detach()
    d = dist.detach()
    scale = 10.0 / w.sum((-1, -2)).clamp(min=_EPS)  # the stress per unit weight, x 10

    def hinge(y: torch.Tensor, c_sign: torch.Tensor, d_sign: torch.Tensor) -> torch.Tensor:
        """(R,) hinge penalty on the wrong and weak centres and double bonds."""
        out = torch.zeros(y.shape[0], dtype=y.dtype, device=y.device)
        if chiral_idx.shape[0]:
            vol = signed_volumes(y, chiral_idx) * c_sign
            out = out + torch.relu(volume_margin - vol).pow(2).sum(-1)
        if dbl_idx.shape[0]:
            cos = cis_trans_cos(y, dbl_idx) * d_sign
            out = out + 10.0 * torch.relu(cos_margin - cos).pow(2).sum(-1)
        return out

    def objective(
        y: torch.Tensor, rows: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Values (R,), gradients (R, N, 3) and hinge penalties (R,) of the conformers
        ``rows`` (None: all). The stress gradient is written out
        (:func:`_stress_and_grad`); autograd runs only on the few hinge terms, and only
        when one is active."""
        sel = slice(None) if rows is None else rows
        # the declared signs are (C,) / (S,), or (M, C) / (M, S) when each conformer has
        # its own (unspecified stereo): then they follow the rows too
        c_sign = chiral_sign if chiral_sign.dim() < 2 else chiral_sign[sel]
        d_sign = dbl_cis if dbl_cis.dim() < 2 else dbl_cis[sel]
        value, grad = _stress_and_grad(y, d[sel], w[sel])
        value = value * scale[sel]
        grad = grad * scale[sel][:, None, None]
        with torch.no_grad():
            pen = hinge(y, c_sign, d_sign)
        if bool((pen > 0).any()):
            with torch.enable_grad():
                z = y.detach().requires_grad_(True)
                (g_pen,) = torch.autograd.grad(hinge(z, c_sign, d_sign).sum(), z)
            grad = grad + g_pen
        return value + pen, grad, pen

    def adam_grad(y: torch.Tensor, step: int) -> torch.Tensor | None:
        _value, grad, pen = objective(y)
        if step > 0 and step % check_every == 0 and not bool((pen > 0).any()):
            return None
        return grad

    y = minimizers.adam(adam_grad, x.detach() * mask.unsqueeze(-1), steps, lr)
    if finish_iters > 0:
        m, n, _ = y.shape

        def per_conformer(
            z: torch.Tensor, rows: torch.Tensor | None
        ) -> tuple[torch.Tensor, torch.Tensor]:
            value, grad, _pen = objective(z.view(-1, n, 3), rows)
            return value, grad.reshape(z.shape[0], -1)

        y = minimizers.lbfgs(
            per_conformer, y.reshape(m, -1), finish_iters, grad_tol=1e-6, rel_tol=1e-6
        ).view(m, n, 3)
    return y.detach() * mask.unsqueeze(-1)


def superpose_rmsd(
    x: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor, allow_reflection: bool = False
) -> torch.Tensor:
    """RMSD of x to ref after optimal superposition (Kabsch), per conformer, (M,).

    The rotation is computed without gradient (envelope theorem: at the optimum
    its derivative does not change the loss), so the result is differentiable
    in ``x`` and safe at degenerate geometries. With ``allow_reflection`` the
    best orthogonal transform may be improper (mirror images count as equal).

    Shapes: x, ref (M, N, 3); mask (M, N).
    """
    m = mask.unsqueeze(-1)
    n = mask.sum(-1).clamp(min=1.0)
    xc = (x - (x * m).sum(-2, keepdim=True) / n[:, None, None]) * m
    rc = (ref - (ref * m).sum(-2, keepdim=True) / n[:, None, None]) * m
    with torch.no_grad():
        h = xc.detach().transpose(-1, -2).double() @ rc.double()  # (M, 3, 3)
        u, _, vt = torch.linalg.svd(h)
        if not allow_reflection:
            det = torch.linalg.det(u @ vt)
            flip = torch.ones_like(u[..., 0, :])
            flip[:, 2] = torch.sign(det)
            u = u * flip.unsqueeze(-2)
        rot = (u @ vt).to(x.dtype)
    diff = xc @ rot - rc
    return (diff.pow(2).sum((-1, -2)) / n).add(1e-12).sqrt()


def stress_weights(dist: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """Stress weights 1 / (d sigma)^2 -- the variance of d under a log-normal with
    log-scale sigma -- scaled to mean 1. Shapes: any, elementwise."""
    w = 1.0 / (dist * torch.exp(log_sigma)).pow(2).clamp(min=1e-6)
    return w / w.mean().clamp(min=1e-12)


def solve_pairs(
    dist: torch.Tensor,
    log_sigma: torch.Tensor,
    pair_i: torch.Tensor,
    pair_j: torch.Tensor,
    n: int,
    steps: int = 30,
    weight_scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """Coordinates for K sampled distance vectors of one molecule.

    ``weight_scale`` (P,) multiplies the stress weight of each pair (e.g. to hold
    bond lengths and angles tighter than the model's own confidence).

    Shapes: dist, log_sigma (K, P); pair_i, pair_j (P,); returns (K, n, 3), Angstrom.
    """
    d, w = dense_pairs(dist, log_sigma, pair_i, pair_j, n, weight_scale)
    return solve(
        d, w, torch.ones(dist.shape[0], n, dtype=dist.dtype, device=dist.device), steps=steps
    )


def dense_pairs(
    dist: torch.Tensor,
    log_sigma: torch.Tensor,
    pair_i: torch.Tensor,
    pair_j: torch.Tensor,
    n: int,
    weight_scale: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric (K, n, n) distance and stress-weight matrices from (K, P) pair vectors."""
    k = dist.shape[0]
    d = torch.zeros(k, n, n, dtype=dist.dtype, device=dist.device)
    d[:, pair_i, pair_j] = dist
    d[:, pair_j, pair_i] = dist
    w = torch.zeros_like(d)
    wk = stress_weights(dist, log_sigma)
    if weight_scale is not None:
        wk = wk * weight_scale
    w[:, pair_i, pair_j] = wk
    w[:, pair_j, pair_i] = wk
    return d, w


def polish(
    x: torch.Tensor,
    dist: torch.Tensor,
    weight: torch.Tensor,
    mask: torch.Tensor,
    iters: int = 40,
) -> torch.Tensor:
    """L-BFGS on the weighted stress, after SMACOF has found the basin.

    SMACOF converges linearly and slowly when a few pairs (bonds, angles) carry
    much larger weights than the rest; a quasi-Newton finish gets bond lengths to
    within ~0.01 A of their targets at a fraction of the cost. The conformers are
    independent: each gets its own L-BFGS history and line search
    (:func:`rdconfvae.geometry.minimizers.lbfgs`).
    Not differentiable (inference only). Shapes as :func:`smacof`.
    """
    w = (weight * _pair_mask(mask)).detach()
    d = dist.detach()
    scale = w.sum((-1, -2)).clamp(min=_EPS)
    m, n, _ = x.shape

    def fun(z: torch.Tensor, rows: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        sel = slice(None) if rows is None else rows
        value, grad = _stress_and_grad(z.view(-1, n, 3), d[sel], w[sel])
        return value / scale[sel], grad.reshape(z.shape[0], -1) / scale[sel].unsqueeze(-1)

    out = minimizers.lbfgs(fun, x.detach().reshape(m, -1), iters, grad_tol=1e-6, rel_tol=1e-6)
    return out.view(m, n, 3) * mask.unsqueeze(-1)


def _stress_and_grad(
    x: torch.Tensor, dist: torch.Tensor, weight: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`stress` (M,) and its gradient (M, N, 3), written out (no autograd):
    d stress / d r_i = sum_j 2 w_ij (1 - d_ij / |r_i - r_j|) (r_i - r_j). ``weight`` must
    already be zero on the diagonal and on padded atoms."""
    diff = x.unsqueeze(-2) - x.unsqueeze(-3)
    cur = diff.pow(2).sum(-1).add(_EPS).sqrt()
    res = cur - dist
    value = 0.5 * (weight * res * res).sum((-1, -2))
    c = 2.0 * weight * res / cur
    grad = c.sum(-1, keepdim=True) * x - c @ x
    return value, grad

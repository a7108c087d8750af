"""Batched minimisers for K independent problems at once (pure torch, no ``torch.optim``).

Every conformer of a molecule is its own problem: :func:`lbfgs` keeps a separate history,
step length and convergence flag per conformer, so a conformer's result does not depend on
the others in the batch (``torch.optim.LBFGS`` on a summed loss shares one line search
between them). :func:`adam` is Adam (Kingma and Ba) with the update written out.
``torch.optim`` is not imported: its first use imports ``torch._dynamo``, seconds on a
first call.

Shapes: x (K, D): K problems of D variables each (callers flatten coordinates).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["lbfgs", "adam"]

#: ``fun(x, rows)`` -> (values (R,), gradients (R, D)) of problems ``rows`` (None: all) at x.
Objective = Callable[[torch.Tensor, torch.Tensor | None], tuple[torch.Tensor, torch.Tensor]]


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum(-1)


def lbfgs(
    fun: Objective,
    x: torch.Tensor,
    steps: int,
    history: int = 8,
    max_step: float = 0.3,
    backtracks: int = 6,
    grad_tol: float = 0.0,
    rel_tol: float = 0.0,
) -> torch.Tensor:
    """Up to ``steps`` L-BFGS iterations on each of the K problems of ``fun``.

    ``fun(z, rows)`` returns the values (R,) and gradients (R, D) of the problems ``rows``
    (a LongTensor; None for all K) at z (R, D). The step along the L-BFGS direction is
    first capped so that no atom (three consecutive variables) moves more than
    ``max_step`` Angstrom, then halved until it meets the Armijo condition (c1 = 1e-4),
    at most ``backtracks`` times; only the problems still searching are re-evaluated. A
    problem whose step fails every backtrack stays put and restarts from steepest
    descent; one whose largest gradient component is at most ``grad_tol``, or whose
    last step lowered its value by at most ``rel_tol`` times that value, stops.

    Shapes: x (K, D) with D = 3 x atoms; returns (K, D).
    """
    k = x.shape[0]
    x = x.detach().clone()
    e, g = fun(x, None)
    s_hist = x.new_zeros(history, *x.shape)
    y_hist = x.new_zeros(history, *x.shape)
    rho = x.new_zeros(history, k)
    gamma = x.new_ones(k)
    converged = torch.zeros(k, dtype=torch.bool, device=x.device)
    for it in range(steps):
        active = ~converged & (g.abs().amax(-1) > grad_tol)
        if not bool(active.any()):
            break
        # two-loop recursion, newest pair first; empty slots have rho = 0 and add nothing
        q = g.clone()
        order = [(it - 1 - i) % history for i in range(min(it, history))]
        alphas = []
        for slot in order:
            a = rho[slot] * _dot(s_hist[slot], q)
            q = q - a.unsqueeze(-1) * y_hist[slot]
            alphas.append(a)
        r = gamma.unsqueeze(-1) * q
        for slot, a in zip(reversed(order), reversed(alphas), strict=True):
            b = rho[slot] * _dot(y_hist[slot], r)
            r = r + (a - b).unsqueeze(-1) * s_hist[slot]
        d = -r
        gd = _dot(g, d)
        uphill = gd >= 0  # not a descent direction: steepest descent instead
        d = torch.where(uphill.unsqueeze(-1), -g, d)
        gd = torch.where(uphill, -_dot(g, g), gd)
        longest = d.view(k, -1, 3).pow(2).sum(-1).amax(-1).sqrt()
        t = (max_step / longest.clamp(min=1e-12)).clamp(max=1.0)
        searching = active & (gd < 0)
        x_new, e_new, g_new = x.clone(), e.clone(), g.clone()
        rows = torch.nonzero(searching).squeeze(-1)
        for _ in range(backtracks + 1):
            if rows.numel() == 0:
                break
            x_try = x[rows] + t[rows].unsqueeze(-1) * d[rows]
            e_try, g_try = fun(x_try, None if rows.numel() == k else rows)
            ok = e_try <= e[rows] + 1e-4 * t[rows] * gd[rows]
            hit = rows[ok]
            x_new[hit] = x_try[ok]
            e_new[hit] = e_try[ok]
            g_new[hit] = g_try[ok]
            rows = rows[~ok]
            t[rows] = 0.5 * t[rows]
        s = x_new - x
        y = g_new - g
        sy = _dot(s, y)
        good = sy > 1e-10
        slot = it % history
        s_hist[slot] = s
        y_hist[slot] = y
        rho[slot] = torch.where(good, 1.0 / sy.clamp(min=1e-10), torch.zeros_like(sy))
        gamma = torch.where(good, sy / _dot(y, y).clamp(min=1e-30), gamma)
        if rows.numel():  # every backtrack failed: forget the history
            rho[:, rows] = 0.0
            gamma[rows] = 1.0
        if rel_tol > 0.0:
            converged |= active & (e - e_new <= rel_tol * e.abs())
        x, e, g = x_new, e_new, g_new
    return x


def adam(
    grad_fn: Callable[[torch.Tensor, int], torch.Tensor | None],
    x: torch.Tensor,
    steps: int,
    lr: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> torch.Tensor:
    """Up to ``steps`` Adam updates of x (any shape), as ``torch.optim.Adam`` defaults do
    them (bias-corrected moments, no weight decay). ``grad_fn(x, step)`` returns the
    gradient at x, or None to stop before that step. Returns the new x."""
    x = x.detach().clone()
    m = torch.zeros_like(x)
    v = torch.zeros_like(x)
    b1, b2 = betas
    for step in range(steps):
        g = grad_fn(x, step)
        if g is None:
            break
        m.lerp_(g, 1.0 - b1)
        v.mul_(b2).addcmul_(g, g, value=1.0 - b2)
        bc1 = 1.0 - b1 ** (step + 1)
        bc2 = 1.0 - b2 ** (step + 1)
        denom = (v.sqrt() / bc2**0.5).add_(eps)
        x.addcdiv_(m, denom, value=-lr / bc1)
    return x

"""MMFF94(s) bonded terms and buffered 14-7 van der Waals in pure torch, batched over conformers.

The energy is RDKit's MMFF (``rdkit.ForceField`` / ``ForceFieldHelpers/MMFF``), term for
term: bond stretch, angle bend, stretch-bend, out-of-plane bend, torsion and van der Waals
over a given pair list; electrostatics are not included. The parameters come from RDKit
once per molecule (:func:`rdconfvae.forcefield.mmff.mmff_terms` reads them into :class:`MMFFTerms`);
everything here is torch, so one energy / gradient evaluation is a fixed handful of tensor
operations over all K conformers of a molecule, and :func:`minimize` runs a batched L-BFGS
over them (each conformer has its own history and step length).

Units: Angstrom, kcal/mol, angles in degrees inside the MMFF formulas (as MMFF defines its
constants). Shapes glossary: K conformers, N atoms, and per term type the number of terms
(B bonds, A angles, S stretch-bends, O out-of-plane terms, T torsions, P van der Waals pairs).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch

from rdconfvae.geometry import minimizers

__all__ = ["MMFFTerms", "energy", "energy_and_grad", "minimize"]

#: MMFF's unit conversion, mdyne Angstrom -> kcal/mol.
_MDYNE_A_TO_KCAL = 143.9325
_DEG2RAD = math.pi / 180.0
_RAD2DEG = 180.0 / math.pi
_C_BOND_CS = -2.0  # cubic stretch constant, 1/Angstrom
_C_BOND_Q = 7.0 / 12.0  # quartic stretch factor
_C_ANGLE_CB = -0.006981317  # cubic bend constant, 1/degree
_C2 = _MDYNE_A_TO_KCAL * _DEG2RAD * _DEG2RAD
_TINY = 1e-12


@dataclass(frozen=True)
class MMFFTerms:
    """The MMFF term lists and parameters of one molecule (int64 indices, float parameters).

    Shapes:
        bond_idx (B, 2); bond_kb, bond_r0 (B,) -- mdyne/A, Angstrom
        angle_idx (A, 3) = i, centre j, k; angle_ka, angle_theta0 (A,) -- mdyne A/rad^2,
        degrees; angle_linear (A,) bool (MMFF's ``lin`` atom types 4, 53, 61 at the centre);
        angle_sb_k (A, 2) stretch-bend constants kbaIJK, kbaKJI (0 where the angle has no
        stretch-bend term); angle_sb_r0 (A, 2) rest lengths of i-j and k-j
        oop_idx (O, 4) = i, centre j, k, l (l the atom out of the i-j-k plane); oop_koop (O,)
        tor_idx (T, 4); tor_v (T, 3) = V1, V2, V3 -- kcal/mol
        vdw_idx (P, 2); vdw_rstar, vdw_eps (P,) -- Angstrom, kcal/mol; vdw_rstar7 = R*^7
        vdw_mask (K, P) or None: which pairs each conformer keeps (None: all)
    """

    n_atoms: int
    bond_idx: torch.Tensor
    bond_kb: torch.Tensor
    bond_r0: torch.Tensor
    angle_idx: torch.Tensor
    angle_ka: torch.Tensor
    angle_theta0: torch.Tensor
    angle_linear: torch.Tensor
    angle_sb_k: torch.Tensor
    angle_sb_r0: torch.Tensor
    oop_idx: torch.Tensor
    oop_koop: torch.Tensor
    tor_idx: torch.Tensor
    tor_v: torch.Tensor
    vdw_idx: torch.Tensor
    vdw_rstar: torch.Tensor
    vdw_rstar7: torch.Tensor
    vdw_eps: torch.Tensor
    vdw_mask: torch.Tensor | None = None

    def to(self, dtype: torch.dtype) -> MMFFTerms:
        """The same terms with floating-point parameters in ``dtype``."""
        if self.bond_kb.dtype == dtype:
            return self
        changes: dict[str, Any] = {
            k: v.to(dtype)
            for k, v in vars(self).items()
            if isinstance(v, torch.Tensor) and v.is_floating_point()
        }
        return dataclasses.replace(self, **changes)

    def select(self, rows: torch.Tensor) -> MMFFTerms:
        """The terms for a subset ``rows`` of the conformers (only the van der Waals mask
        depends on the conformer)."""
        if self.vdw_mask is None:
            return self
        return dataclasses.replace(self, vdw_mask=self.vdw_mask[rows])


# Internally coordinates are (3, N, K): x, y, z planes of atoms x conformers, so a term's
# atoms are gathered as whole (T, K) rows (index_select on dim 1) and every vector
# operation is elementwise over (T, K) planes (no reductions over a trailing dim of 3).


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _cross(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.stack(
        (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])
    )


def _col(v: torch.Tensor) -> torch.Tensor:
    """(T,) parameters -> (T, 1), to broadcast over conformers."""
    return v.unsqueeze(-1)


def _positions(xt: torch.Tensor, idx: torch.Tensor) -> list[torch.Tensor]:
    """The (3, T, K) positions of each column of ``idx`` (T, c), gathered in one call."""
    flat = torch.index_select(xt, 1, idx.T.reshape(-1))
    return list(flat.view(3, idx.shape[1], idx.shape[0], xt.shape[2]).unbind(1))


def _pairs(xt: torch.Tensor, t: MMFFTerms, grads: list | None) -> torch.Tensor:
    """Bond stretch and van der Waals, both functions of one distance; returns (K,).

    Bond: c1/2 kb dr^2 (1 + cs dr + 7/12 cs^2 dr^2), dr = r - r0.
    Van der Waals (buffered 14-7): eps (1.07 R*/(r + 0.07 R*))^7 (1.12 R*^7/(r^7 + 0.12 R*^7) - 2).
    """
    nb = t.bond_idx.shape[0]
    idx = torch.cat((t.bond_idx, t.vdw_idx))
    pi, pj = _positions(xt, idx)
    v = pi - pj
    r2 = _dot(v, v)
    r = r2.sqrt()
    rb, rv, r2v = r[:nb], r[nb:], r2[nb:]
    # bonds
    dr = rb - _col(t.bond_r0)
    kb = _MDYNE_A_TO_KCAL * _col(t.bond_kb)
    cs, q = _C_BOND_CS, _C_BOND_Q * _C_BOND_CS**2
    e = (0.5 * kb * dr * dr * (1.0 + cs * dr + q * dr * dr)).sum(0)
    # van der Waals
    rs = _col(t.vdw_rstar)
    rs7 = _col(t.vdw_rstar7)
    eps = _col(t.vdw_eps) if t.vdw_mask is None else _col(t.vdw_eps) * t.vdw_mask.T
    buf = rv + 0.07 * rs
    a = 1.07 * rs / buf
    a2 = a * a
    a7 = a2 * a2 * a2 * a
    r6 = r2v * r2v * r2v
    den = r6 * rv + 0.12 * rs7
    bt = 1.12 * rs7 / den
    e = e + (eps * a7 * (bt - 2.0)).sum(0)
    if grads is not None:
        de_b = kb * dr * (1.0 + 1.5 * cs * dr + 2.0 * q * dr * dr)
        de_v = -7.0 * eps * a7 * ((bt - 2.0) / buf + bt * r6 / den)
        gi = v * (torch.cat((de_b, de_v)) / r.clamp(min=_TINY))
        grads.append((idx, (gi, -gi)))
    return e


def _angles(xt: torch.Tensor, t: MMFFTerms, grads: list | None) -> torch.Tensor:
    """Angle bend (+ stretch-bend on the same triples), returns (K,).

    Bend: c2/2 ka d^2 (1 + cb d), d = theta - theta0 in degrees; at a linear centre
    c1 ka (1 + cos theta). Stretch-bend: c1 (pi/180) d (kIJK dr_ij + kKJI dr_kj).
    """
    pi, pj, pk = _positions(xt, t.angle_idx)
    a = pi - pj
    b = pk - pj
    la = _dot(a, a).sqrt().clamp(min=_TINY)
    lb = _dot(b, b).sqrt().clamp(min=_TINY)
    cos = (_dot(a, b) / (la * lb)).clamp(-1.0, 1.0)
    d = torch.acos(cos) * _RAD2DEG - _col(t.angle_theta0)
    ka = _col(t.angle_ka)
    lin = _col(t.angle_linear)
    e_bend = torch.where(
        lin, _MDYNE_A_TO_KCAL * ka * (1.0 + cos), 0.5 * _C2 * ka * d * d * (1.0 + _C_ANGLE_CB * d)
    )
    sb = _MDYNE_A_TO_KCAL * _DEG2RAD * t.angle_sb_k  # (A, 2), zero where no stretch-bend
    k1, k2 = _col(sb[:, 0]), _col(sb[:, 1])
    stretch = k1 * (la - _col(t.angle_sb_r0[:, 0])) + k2 * (lb - _col(t.angle_sb_r0[:, 1]))
    e = (e_bend + d * stretch).sum(0)
    if grads is not None:
        sin = (1.0 - cos * cos).clamp(min=0.0).sqrt().clamp(min=1e-8)
        de_dd = _C2 * ka * d * (1.0 + 1.5 * _C_ANGLE_CB * d) + stretch  # dE/d(theta, degrees)
        de_dcos = torch.where(lin, _MDYNE_A_TO_KCAL * ka, -_RAD2DEG * de_dd / sin)
        ua, ub = a / la, b / lb
        gi = (ub - cos * ua) * (de_dcos / la) + ua * (k1 * d)
        gk = (ua - cos * ub) * (de_dcos / lb) + ub * (k2 * d)
        grads.append((t.angle_idx, (gi, -(gi + gk), gk)))
    return e


def _oops(xt: torch.Tensor, t: MMFFTerms, grads: list | None) -> torch.Tensor:
    """Out-of-plane bend, c2/2 koop chi^2 (Wilson angle chi of j-l to the i-j-k plane, degrees)."""
    pi, pj, pk, pl = _positions(xt, t.oop_idx)
    vi, vk, vl = pi - pj, pk - pj, pl - pj
    li, lk, ll = (_dot(v, v).sqrt().clamp(min=_TINY) for v in (vi, vk, vl))
    ui, uk, ul = vi / li, vk / lk, vl / ll
    c = _dot(ui, uk)
    s = (1.0 - c * c).clamp(min=1e-16).sqrt()
    n = _cross(ui, uk)
    triple = _dot(n, ul)
    sin_chi = (triple / s).clamp(-1.0, 1.0)
    chi = torch.asin(sin_chi) * _RAD2DEG
    koop = _C2 * _col(t.oop_koop)
    e = (0.5 * koop * chi * chi).sum(0)
    if grads is not None:
        cos_chi = (1.0 - sin_chi * sin_chi).clamp(min=0.0).sqrt().clamp(min=1e-8)
        f = koop * chi * _RAD2DEG / cos_chi  # dE / d(sin chi)
        # d(sin chi)/d(unit vectors), then projected off each unit vector and / length
        corr = triple * c / (s * s * s)
        d_ui = _cross(uk, ul) / s + corr * uk
        d_uk = _cross(ul, ui) / s + corr * ui
        d_ul = n / s
        gi = (d_ui - _dot(d_ui, ui) * ui) * (f / li)
        gk = (d_uk - _dot(d_uk, uk) * uk) * (f / lk)
        gl = (d_ul - _dot(d_ul, ul) * ul) * (f / ll)
        grads.append((t.oop_idx, (gi, -(gi + gk + gl), gk, gl)))
    return e


def _torsions(xt: torch.Tensor, t: MMFFTerms, grads: list | None) -> torch.Tensor:
    """Torsion, (V1 (1 + cos phi) + V2 (1 - cos 2phi) + V3 (1 + cos 3phi)) / 2."""
    p1, p2, p3, p4 = _positions(xt, t.tor_idx)
    a = p1 - p2
    b = p3 - p2
    d = p4 - p3
    nt = a.shape[1]
    # t1 = a x b and t2 = d x b = (p2 - p3) x (p4 - p3), in one cross product
    tt = _cross(torch.cat((a, d), 1), torch.cat((b, b), 1))
    nn = _dot(tt, tt).sqrt()
    t1, t2, n1, n2 = tt[:, :nt], tt[:, nt:], nn[:nt], nn[nt:]
    ok = (n1 > 1e-10) & (n2 > 1e-10)  # a 180-degree bond angle: cos phi = 0, as in RDKit
    n1, n2 = n1.clamp(min=1e-10), n2.clamp(min=1e-10)
    cos = torch.where(ok, (_dot(t1, t2) / (n1 * n2)).clamp(-1.0, 1.0), 0.0)
    v1, v2, v3 = _col(t.tor_v[:, 0]), _col(t.tor_v[:, 1]), _col(t.tor_v[:, 2])
    cos2 = 2.0 * cos * cos - 1.0
    cos3 = cos * (2.0 * cos2 - 1.0)
    e = (0.5 * (v1 * (1.0 + cos) + v2 * (1.0 - cos2) + v3 * (1.0 + cos3))).sum(0)
    if grads is not None:
        de = torch.where(ok, 0.5 * (v1 - 4.0 * v2 * cos + v3 * (12.0 * cos * cos - 3.0)), 0.0)
        u1, u2 = t1 / n1, t2 / n2
        g1 = (u2 - cos * u1) * (de / n1)  # dE/dt1
        g2 = (u1 - cos * u2) * (de / n2)  # dE/dt2
        # t1 = a x b, t2 = d x b: dE/da = b x g1, dE/dd = b x g2, dE/db = g1 x a + g2 x d
        gg = torch.cat((g1, g2), 1)
        gad = _cross(torch.cat((b, b), 1), gg)
        gba = _cross(gg, torch.cat((a, d), 1))
        ga, gd = gad[:, :nt], gad[:, nt:]
        gb = gba[:, :nt] + gba[:, nt:]
        grads.append((t.tor_idx, (ga, -(ga + gb), gb - gd, gd)))
    return e


_TERMS = (
    ("angle_idx", _angles),
    ("oop_idx", _oops),
    ("tor_idx", _torsions),
)


def _evaluate(
    xt: torch.Tensor, terms: MMFFTerms, want_grad: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Energy (K,) and, if asked, gradient (3, N, K) at internal-layout coordinates."""
    grads: list | None = [] if want_grad else None
    e = _pairs(xt, terms, grads)
    for name, fn in _TERMS:
        if getattr(terms, name).shape[0]:
            e = e + fn(xt, terms, grads)
    if grads is None:
        return e, None
    g = xt.new_zeros(xt.shape)
    for idx, pieces in grads:
        g.index_add_(1, idx.T.reshape(-1), torch.cat(pieces, 1))
    return e, g


def _to_internal(x: torch.Tensor) -> torch.Tensor:
    return x.permute(2, 1, 0).contiguous()


def _from_internal(xt: torch.Tensor) -> torch.Tensor:
    return xt.permute(2, 1, 0).contiguous()


def energy(x: torch.Tensor, terms: MMFFTerms) -> torch.Tensor:
    """MMFF energy (bonded + van der Waals, no electrostatics) per conformer, kcal/mol.

    Shapes: x (K, N, 3) Angstrom; returns (K,).
    """
    e, _ = _evaluate(_to_internal(x), terms.to(x.dtype), False)
    return e


def _energy_grad(xt: torch.Tensor, terms: MMFFTerms) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_evaluate` with the gradient, (K,) and (3, N, K)."""
    e, g = _evaluate(xt, terms, True)
    if g is None:  # pragma: no cover -- want_grad=True always returns one
        raise RuntimeError("no gradient")
    return e, g


def energy_and_grad(x: torch.Tensor, terms: MMFFTerms) -> tuple[torch.Tensor, torch.Tensor]:
    """Energy (K,) kcal/mol and its analytic gradient (K, N, 3) kcal/mol/Angstrom."""
    e, g = _energy_grad(_to_internal(x), terms.to(x.dtype))
    return e, _from_internal(g)


def minimize(
    x: torch.Tensor, terms: MMFFTerms, steps: int, history: int = 8, max_step: float = 0.3
) -> torch.Tensor:
    """``steps`` L-BFGS iterations on :func:`energy` for every conformer at once
    (:func:`rdconfvae.geometry.minimizers.lbfgs`: each conformer with its own history and step
    length, so the result does not depend on the batch). Computes in the dtype of x.

    Shapes: x (K, N, 3) Angstrom; returns (K, N, 3).
    """
    k, n, _ = x.shape
    terms = terms.to(x.dtype)

    def fun(z: torch.Tensor, rows: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        sub = terms if rows is None else terms.select(rows)
        e, g = _energy_grad(_to_internal(z.view(-1, n, 3)), sub)
        return e, _from_internal(g).view(z.shape[0], -1)

    out = minimizers.lbfgs(fun, x.detach().reshape(k, -1), steps, history, max_step)
    return out.view(k, n, 3)

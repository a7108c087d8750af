"""GFN2-xTB re-optimisation of one conformer with tblite (optional ``xtb`` extra)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from rdkit import Chem

from rdconfvae.data.readers import HARTREE_TO_KCAL

__all__ = [
    "BOHR",
    "load_tblite",
    "xtb_optimize",
]

#: 1 Bohr in Angstrom (CODATA 2018).
BOHR = 0.529177210903


def load_tblite() -> Any:
    """tblite's ``Calculator`` class; ``ImportError`` with the install hint without tblite or
    scipy (the job calls it before any work)."""
    # one OpenMP thread per process unless the user says otherwise: read when tblite's OpenMP
    # runtime loads, and oversubscribed spinning threads cost 20x on a busy machine (measured)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        from tblite.interface import Calculator
    except ImportError as exc:
        raise ImportError(
            "--xtb needs the tblite package (GFN2-xTB): pip install tblite scipy"
        ) from exc
    try:
        import scipy.optimize  # noqa: F401
    except ImportError as exc:  # pragma: no cover - scipy comes with most stacks
        raise ImportError(
            "--xtb needs scipy for the geometry optimiser: pip install scipy"
        ) from exc
    return Calculator


def xtb_optimize(
    mol: Chem.Mol,
    conf_id: int,
    *,
    solvent: str | None = None,
    max_steps: int = 500,
    gtol: float = 1e-3,
) -> tuple[float, bool]:
    """Re-optimise one conformer with GFN2-xTB (tblite) in place.

    L-BFGS in Cartesian coordinates until the largest gradient component is below ``gtol``
    (Hartree/Bohr; xtb's "normal" level is 1e-3) or ``max_steps`` steps. One OpenMP thread
    unless ``OMP_NUM_THREADS`` says otherwise (processes are the parallelism).

    Returns:
        ``(energy, converged)``: total energy in kcal/mol, convergence flag.

    Raises:
        ImportError: tblite (or scipy) is not installed.
        RuntimeError: the SCC does not converge (tblite's ``TBLiteRuntimeError``).
    """
    calculator = load_tblite()
    from scipy.optimize import minimize

    conf = mol.GetConformer(conf_id)
    numbers = np.array([a.GetAtomicNum() for a in mol.GetAtoms()], dtype=np.int32)
    x0 = np.asarray(conf.GetPositions(), dtype=np.float64) / BOHR
    charge = float(Chem.GetFormalCharge(mol))
    uhf = int(sum(a.GetNumRadicalElectrons() for a in mol.GetAtoms()))
    calc = calculator("GFN2-xTB", numbers, x0, charge=charge, uhf=uhf)
    calc.set("verbosity", 0)
    if solvent:
        calc.add("alpb-solvation", solvent)
    state: dict[str, Any] = {"res": None}

    def energy_gradient(x: np.ndarray) -> tuple[float, np.ndarray]:
        calc.update(positions=x.reshape(-1, 3))
        state["res"] = calc.singlepoint(state["res"])
        return float(state["res"].get("energy")), np.asarray(state["res"].get("gradient")).ravel()

    out = minimize(
        energy_gradient,
        x0.ravel(),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": int(max_steps), "gtol": float(gtol), "ftol": 1e-12},
    )
    xyz = out.x.reshape(-1, 3) * BOHR
    for i, p in enumerate(xyz):
        conf.SetAtomPosition(i, p.tolist())
    converged = bool(np.max(np.abs(out.jac)) <= gtol * 1.0001)
    return float(out.fun) * HARTREE_TO_KCAL, converged

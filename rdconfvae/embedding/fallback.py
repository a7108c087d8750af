"""Out-of-domain molecules: RDKit's ETKDGv3 instead of the model (``fallback="etkdg"``)."""

from __future__ import annotations

import math
import os
import sys
import warnings
from types import FrameType

from rdkit import Chem
from rdkit.Chem import rdDistGeom
from rdkit.Geometry import Point3D

from rdconfvae.deadline import Deadline
from rdconfvae.embedding.attach import GENERATOR_PROP, attach
from rdconfvae.embedding.coordmap import parse_coord_map, superpose_onto
from rdconfvae.errors import EmbeddingFailedError, EmbeddingTimeoutError
from rdconfvae.forcefield.mmff import mmff_minimize
from rdconfvae.params import EmbedParameters, resolve_seed

__all__ = ["FallbackWarning", "embed_etkdg", "caller_stacklevel", "describe"]

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # rdconfvae/


class FallbackWarning(UserWarning):
    """A molecule outside the model's domain was embedded with RDKit's ETKDGv3.

    Issued for every such molecule, naming it and the reason, at the caller's line;
    silence it the standard way: ``warnings.simplefilter("ignore", FallbackWarning)``.
    """


def caller_stacklevel() -> int:
    """``stacklevel`` of the first frame outside this package (the user's call)."""
    frame: FrameType | None = sys._getframe(1)
    level = 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(
        _PACKAGE_DIR + os.sep
    ):
        frame = frame.f_back
        level += 1
    return level


def describe(mol: Chem.Mol, limit: int = 80) -> str:
    """The molecule's name, else its SMILES (shortened), for messages."""
    if mol.HasProp("_Name") and mol.GetProp("_Name").strip():
        return mol.GetProp("_Name").strip()
    try:
        smiles = Chem.MolToSmiles(Chem.RemoveHs(mol, sanitize=False))
    except Exception:  # noqa: BLE001 -- a name for a message, never a failure
        smiles = f"{mol.GetNumAtoms()}-atom molecule"
    return smiles if len(smiles) <= limit else smiles[: limit - 3] + "..."


def embed_etkdg(
    mol: Chem.Mol,
    n: int,
    opts: EmbedParameters,
    mmff: bool,
    reason: str = "",
    *,
    deadline: Deadline,
) -> list[int]:
    """RDKit ETKDGv3 on a copy (hydrogens added when missing), then attached to ``mol``.

    Warns (:class:`FallbackWarning`) once per molecule, naming it and ``reason``.
    ``deadline``: the molecule's time limit (``opts.timeout``), started by the caller; RDKit
    gets 80 % of the seconds left of it (it checks its limit between its own stages, so it
    overruns) and the MMFF minimisation checks it between conformers."""
    warnings.warn(
        f"{describe(mol)}: outside the ConfVAE domain ({reason or 'unsupported'}); embedded "
        f"with RDKit ETKDGv3 instead (conformer property {GENERATOR_PROP}='etkdg')",
        FallbackWarning,
        stacklevel=caller_stacklevel(),
    )
    work = Chem.Mol(mol)
    has_h = any(a.GetAtomicNum() == 1 for a in work.GetAtoms())
    full = work if has_h else Chem.AddHs(work)
    params = rdDistGeom.ETKDGv3()
    # rdkit's stubs type these fields as EmbedParameters: the ignores are for that
    params.randomSeed = resolve_seed(opts.randomSeed)  # type: ignore[assignment]
    params.numThreads = int(opts.numThreads or 0)  # type: ignore[assignment]
    params.pruneRmsThresh = float(opts.pruneRmsThresh or -1.0)  # type: ignore[assignment]
    params.enforceChirality = bool(opts.enforceChirality)  # type: ignore[assignment]
    left = deadline.remaining()
    if left is not None:
        deadline.check("the ETKDGv3 fallback")
        # RDKit checks its limit between its own stages and overran a 10 s limit by up to
        # 4 s on a cyclic peptide: it gets 80 % of the time left
        params.timeout = max(1, int(math.floor(0.8 * left)))  # type: ignore[assignment]
    points = parse_coord_map(work, opts.coordMap)  # fixed atoms: RDKit's coordMap, aligned
    if points:
        cmap = {i: Point3D(*map(float, p)) for i, p in points.items()}
        params.SetCoordMap(cmap)  # type: ignore[call-arg, arg-type]  # rdkit's stub
    rdDistGeom.EmbedMultipleConfs(full, int(n), params)
    # the conformers RDKit kept: at its time limit it can return ids it did not keep
    ids = [c.GetId() for c in full.GetConformers()]
    if not ids:
        if opts.timeout:
            raise EmbeddingTimeoutError(
                f"ETKDGv3 fallback: no conformer within the timeout of {opts.timeout} s"
            )
        raise EmbeddingFailedError("ETKDGv3 fallback produced no conformer")
    energies: list[float | None] = [None] * len(ids)
    converged: list[bool | None] = [None] * len(ids)
    if mmff:
        res = mmff_minimize(
            full,
            dielectric=opts.dielectric,
            dielectric_constant=4.0 if opts.dielectric == "distance" else 1.0,
            num_threads=int(opts.numThreads or 0),
            deadline=deadline,
        )
        if res is not None:
            energies = [r.energy for r in res]
            converged = [r.converged for r in res]
    n_atoms = work.GetNumAtoms()
    coords = [full.GetConformer(i).GetPositions()[:n_atoms] for i in ids]
    if points:
        coords = [superpose_onto(c, points) for c in coords]
    return attach(mol, coords, energies, converged, "etkdg", bool(opts.clearConfs))

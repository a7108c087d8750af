"""Out-of-domain molecules: RDKit's ETKDGv3 instead of the model (``fallback="etkdg"``)."""

from __future__ import annotations

import math
import threading
import warnings

from rdkit import Chem
from rdkit.Chem import rdDistGeom

from rdconfvae.attach import GENERATOR_PROP, attach
from rdconfvae.errors import EmbeddingFailedError
from rdconfvae.params import EmbedParameters, resolve_seed
from rdconfvae.refine import mmff_minimize

__all__ = ["FallbackWarning", "embed_etkdg"]

_fallback_warned = threading.Event()


class FallbackWarning(UserWarning):
    """A molecule outside the model's domain was embedded with RDKit's ETKDGv3."""


def embed_etkdg(mol: Chem.Mol, n: int, opts: EmbedParameters, mmff: bool) -> list[int]:
    """RDKit ETKDGv3 on a copy (hydrogens added when missing), then attached to ``mol``."""
    if not _fallback_warned.is_set():
        _fallback_warned.set()
        warnings.warn(
            "molecule outside the ConfVAE domain: embedded with RDKit ETKDGv3 instead "
            f"(conformer property {GENERATOR_PROP!r} says which generator made each conformer)",
            FallbackWarning,
            stacklevel=3,
        )
    work = Chem.Mol(mol)
    has_h = any(a.GetAtomicNum() == 1 for a in work.GetAtoms())
    full = work if has_h else Chem.AddHs(work)
    params = rdDistGeom.ETKDGv3()
    params.randomSeed = resolve_seed(opts.randomSeed)
    params.numThreads = int(opts.numThreads or 0)
    params.pruneRmsThresh = float(opts.pruneRmsThresh or -1.0)
    params.enforceChirality = bool(opts.enforceChirality)
    if opts.timeout:
        params.timeout = int(math.ceil(float(opts.timeout)))
    ids = list(rdDistGeom.EmbedMultipleConfs(full, int(n), params))
    if not ids:
        raise EmbeddingFailedError("ETKDGv3 fallback produced no conformer")
    energies: list[float | None] = [None] * len(ids)
    converged: list[bool | None] = [None] * len(ids)
    if mmff:
        res = mmff_minimize(
            full,
            dielectric=str(opts.dielectric),
            dielectric_constant=4.0 if opts.dielectric == "distance" else 1.0,
            num_threads=int(opts.numThreads or 0),
        )
        if res is not None:
            energies = [r.energy for r in res]
            converged = [r.converged for r in res]
    n_atoms = work.GetNumAtoms()
    coords = [full.GetConformer(i).GetPositions()[:n_atoms] for i in ids]
    return attach(mol, coords, energies, converged, "etkdg", bool(opts.clearConfs))

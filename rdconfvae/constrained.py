"""Core-constrained embedding, like RDKit's ``AllChem.ConstrainedEmbed``, for n conformers.

The core (a molecule with a conformer, e.g. the scaffold of a docked or crystal pose)
is matched as a substructure of the molecule; the matched atoms become a coordMap
(:mod:`rdconfvae.embedding.constraints`), so every conformer holds the core's coordinates, in the
core's frame. The core RMSD of each conformer (mapped atoms, after superposition) is
stored as conformer property ``EmbedRMS`` (float), and the largest as molecule property
``EmbedRMS`` (a string, as RDKit's ``ConstrainedEmbed`` sets it).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from rdkit import Chem

from rdconfvae.api import embed
from rdconfvae.embedding.constraints import kabsch
from rdconfvae.embedding.engine import validate_mol
from rdconfvae.errors import InvalidInputError

__all__ = ["constrained_embed", "EMBED_RMS_PROP"]

#: Conformer (float) and molecule (string) property with the core RMSD, Angstrom.
EMBED_RMS_PROP = "EmbedRMS"


def core_coord_map(
    mol: Chem.Mol, core: Chem.Mol, core_conf_id: int = -1, use_chirality: bool = False
) -> dict[int, Any]:
    """``{atom index of mol: Point3D}`` from the first substructure match of ``core``.

    Raises :class:`InvalidInputError` when ``core`` is no molecule, has no conformer,
    holds hydrogens (only heavy atoms can be fixed: pass ``Chem.RemoveHs(core)``), or does
    not match ``mol``.
    """
    if not isinstance(core, Chem.Mol) or core.GetNumAtoms() == 0:
        raise InvalidInputError(f"core must be an rdkit Chem.Mol with atoms, got {core!r}")
    if core.GetNumConformers() == 0:
        raise InvalidInputError("core has no conformer: its coordinates are what is fixed")
    hydrogens = [a.GetIdx() for a in core.GetAtoms() if a.GetAtomicNum() == 1]
    if hydrogens:
        raise InvalidInputError(
            f"core holds hydrogen atoms {hydrogens}: only heavy atoms can be fixed "
            "(pass Chem.RemoveHs(core))"
        )
    match = mol.GetSubstructMatch(core, useChirality=use_chirality)
    if not match:
        raise InvalidInputError(
            f"core {Chem.MolToSmiles(core)} does not match the molecule "
            f"{Chem.MolToSmiles(mol)} (no substructure match)"
        )
    try:
        conf = core.GetConformer(core_conf_id)
    except ValueError:
        raise InvalidInputError(f"core has no conformer with id {core_conf_id}") from None
    return {int(m): conf.GetAtomPosition(i) for i, m in enumerate(match)}


def constrained_embed(
    mol: Chem.Mol,
    core: Chem.Mol,
    n: int = 10,
    *,
    core_conf_id: int = -1,
    use_chirality: bool = False,
    **kwargs: Any,
) -> list[int]:
    """Embed ``n`` conformers of ``mol`` in place, each holding the coordinates of ``core``.

    Args:
        mol: the molecule (with or without explicit hydrogens).
        core: a molecule with a conformer, matched as a substructure of ``mol``
            (``mol.GetSubstructMatch(core)``, the first match), heavy atoms only.
        n: number of conformers.
        core_conf_id: the core's conformer to use.
        use_chirality: match the core with chirality (RDKit's ``useChirality``).
        **kwargs: :func:`rdconfvae.embed`'s options (``seed``, ``mmff``, ``num_threads``,
            ``prune_rms``, ...), except ``coord_map``, which the core supplies.

    Returns the new conformer ids. Each conformer's core atoms sit at the core's
    coordinates (aligned onto the core); ``EmbedRMS`` records the remaining RMSD.

    Raises:
        InvalidInputError: a core that does not match, has no conformer or holds
            hydrogens, or coordinates no molecule can have (distances outside RDKit's
            bounds); ``mol`` is untouched.
        The errors of :func:`rdconfvae.embed` otherwise.

    >>> from rdkit import Chem
    >>> from rdconfvae import embed
    >>> ref = Chem.MolFromSmiles("Cc1ccc(N)nc1")
    >>> _ = embed(ref, n=1, seed=3)
    >>> core = Chem.RWMol(Chem.MolFromSmiles("c1ccc(N)nc1"))  # the aminopyridine
    >>> match = ref.GetSubstructMatch(core)
    >>> conf = Chem.Conformer(core.GetNumAtoms())
    >>> for i, j in enumerate(match):
    ...     conf.SetAtomPosition(i, ref.GetConformer().GetAtomPosition(j))
    >>> _ = core.AddConformer(conf)
    >>> mol = Chem.MolFromSmiles("CCc1ccc(N)nc1")
    >>> constrained_embed(mol, core, n=3, seed=7)
    [0, 1, 2]
    >>> mol.GetConformer(0).GetDoubleProp("EmbedRMS") < 0.05
    True
    """
    validate_mol(mol)
    if "coord_map" in kwargs:
        raise TypeError("constrained_embed() takes its coord_map from the core")
    coord_map = core_coord_map(mol, core, core_conf_id, use_chirality)
    ids = embed(mol, n, coord_map=coord_map, **kwargs)
    idx = np.array(list(coord_map), dtype=np.int64)
    target = np.array([[p.x, p.y, p.z] for p in coord_map.values()])
    worst = 0.0
    for cid in ids:
        conf = mol.GetConformer(cid)
        xyz = conf.GetPositions()[idx]
        rot, shift = kabsch(xyz, target)
        rms = float(np.sqrt(((xyz @ rot + shift - target) ** 2).sum(-1).mean()))
        conf.SetDoubleProp(EMBED_RMS_PROP, rms)
        worst = max(worst, rms)
    mol.SetProp(EMBED_RMS_PROP, str(worst))
    return ids

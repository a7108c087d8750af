"""Reference conformer ensembles from SMILES: the recipe behind ``python -m rdconfvae.data build``.

Per molecule (:func:`build_ensemble`)::

    graph (explicit H, every stereo element specified)
      -> ETKDGv3 over-sampling (``samples`` embeddings, per-molecule seed)
      -> MMFF94s minimisation to convergence (distance-dependent dielectric eps = 4r by default)
      -> conformers whose 3D stereo differs from the graph dropped
      -> [optional GFN2-xTB re-optimisation with tblite, :func:`rdconfvae.data.xtb.xtb_optimize`]
      -> energy window (kcal/mol above the lowest conformer)
      -> symmetry-aware heavy-atom RMSD de-duplication, greedy in energy order
      -> Boltzmann weights at ``temperature`` (K), summing to 1

:func:`build_one` is the unit of work of the file job (:mod:`rdconfvae.data.job`): one input
record to its SDF text or the reason it failed. Options: :mod:`rdconfvae.data.recipe_options`.

Determinism: the seed of a molecule is derived from the run seed and the molecule's record
index in the input (:func:`molecule_seed`). Units: Angstrom, kcal/mol, Kelvin.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rdkit import Chem
from rdkit.Chem import rdDistGeom, rdMolDescriptors
from rdkit.Chem.EnumerateStereoisomers import (
    EnumerateStereoisomers,
    StereoEnumerationOptions,
)
from rdkit.rdBase import BlockLogs

from rdconfvae.data.readers import boltzmann_weights
from rdconfvae.data.recipe_options import ENERGY_PROP, STAT_KEYS, WEIGHT_PROP, BuildOptions
from rdconfvae.data.records import ALLOWED_ELEMENTS, MolRecord
from rdconfvae.data.xtb import xtb_optimize
from rdconfvae.embedding.prune import prune_indices
from rdconfvae.errors import (
    EmbeddingFailedError,
    InvalidInputError,
    RdConfVAEError,
    UnsupportedMoleculeError,
)
from rdconfvae.evaluation import metrics
from rdconfvae.forcefield.mmff import mmff_minimize

__all__ = [
    "Ensemble",
    "MoleculeResult",
    "build_ensemble",
    "build_one",
    "embed_conformers",
    "molecule_seed",
    "prepare_molecule",
    "refine_ensemble",
    "select_conformers",
]


@dataclass
class Ensemble:
    """One molecule's ensemble: conformers in energy order, ids 0..C-1.

    Attributes:
        mol: explicit-H molecule carrying the kept conformers (Angstrom).
        energies: ``(C,)`` kcal/mol relative to the lowest kept conformer (the first).
        weights: ``(C,)`` Boltzmann weights at the options' temperature, summing to 1.
        smiles: canonical isomeric SMILES of the graph the ensemble was built for.
        stats: conformer counts per stage: ``embedded``, ``not_converged``, ``stereo_changed``,
            ``xtb_failed``, ``above_window``, ``duplicates``, ``capped``, ``kept``, plus
            ``stereo_assigned`` (stereo elements the input left unspecified, set to the first
            stereoisomer).
    """

    mol: Chem.Mol
    energies: np.ndarray
    weights: np.ndarray
    smiles: str
    stats: dict[str, int] = field(default_factory=dict)

    def to_record(self, name: str) -> MolRecord:
        """The ensemble as a :class:`~rdconfvae.data.records.MolRecord`."""
        mol = Chem.Mol(self.mol)
        mol.SetProp("_Name", name)
        return MolRecord(name=name, mol=mol, weights=self.weights, energies=self.energies)


def molecule_seed(seed: int, index: int) -> int:
    """Per-molecule ETKDG seed in [0, 2**31) from the run seed and the record index."""
    digest = hashlib.sha256(f"rdconfvae-build/{int(seed)}/{int(index)}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def prepare_molecule(
    item: str | Chem.Mol, allowed_elements: Iterable[str] | None = ALLOWED_ELEMENTS
) -> tuple[Chem.Mol, int]:
    """The graph to build an ensemble for: explicit H, no conformer, all stereo specified.

    ``item`` is a SMILES string or a molecule (stereo taken from its 3D coordinates when it
    has them; its conformers are dropped). Stereo elements the input leaves unspecified are
    set to the first stereoisomer RDKit enumerates, so every conformer of the ensemble has the
    same stereo; their number is returned.

    Returns:
        ``(mol, n_assigned)``.

    Raises:
        InvalidInputError: unparsable SMILES, a molecule RDKit cannot sanitise, several
            fragments or no heavy atom.
        UnsupportedMoleculeError: an element outside ``allowed_elements``.
    """
    with BlockLogs():
        if isinstance(item, Chem.Mol):
            mol = Chem.Mol(item)
            if mol.GetNumConformers() and mol.GetConformer().Is3D():
                Chem.AssignStereochemistryFrom3D(mol, replaceExistingTags=True)
            mol.RemoveAllConformers()
        else:
            text = (item or "").strip()
            if not text:
                raise InvalidInputError("invalid SMILES: empty")
            mol = Chem.MolFromSmiles(text, sanitize=False)
            if mol is None:
                raise InvalidInputError(f"invalid SMILES: RDKit cannot parse {text!r}")
        if allowed_elements is not None:
            bad = sorted({a.GetSymbol() for a in mol.GetAtoms()} - set(allowed_elements))
            if bad:
                raise UnsupportedMoleculeError(
                    f"unsupported element: {' '.join(bad)} (allowed: {' '.join(allowed_elements)})"
                )
        try:
            Chem.SanitizeMol(mol)
        except (ValueError, RuntimeError) as exc:  # MolSanitizeException is a ValueError
            raise InvalidInputError(f"invalid molecule: {str(exc).strip()}") from None
        Chem.AssignStereochemistry(mol, cleanIt=True, force=True)
    n_frags = len(Chem.GetMolFrags(mol))
    if n_frags != 1:
        raise InvalidInputError(
            f"several fragments: {n_frags} (strip salts and solvents to one molecule first)"
        )
    if mol.GetNumHeavyAtoms() == 0:
        raise InvalidInputError("no heavy atoms: nothing to build")
    heavy = Chem.RemoveHs(mol)
    n_assigned = sum(
        1
        for si in Chem.FindPotentialStereo(heavy)
        if si.specified == Chem.StereoSpecified.Unspecified
    )
    if n_assigned:
        opts = StereoEnumerationOptions(onlyUnassigned=True, unique=True)
        with BlockLogs():
            first = next(iter(EnumerateStereoisomers(heavy, options=opts)), None)
        if first is not None:
            heavy = first
        n_assigned_left = sum(
            1
            for si in Chem.FindPotentialStereo(heavy)
            if si.specified == Chem.StereoSpecified.Unspecified
        )
        n_assigned -= n_assigned_left
    mol = Chem.AddHs(heavy)
    return mol, n_assigned


def embed_conformers(mol: Chem.Mol, n: int, seed: int, timeout: float | None = None) -> list[int]:
    """ETKDGv3 embeddings of ``mol`` (in place, one thread); returns the new conformer ids.

    A first attempt that yields nothing is retried with random starting coordinates (RDKit's
    advice for large or strained molecules).

    Raises:
        EmbeddingFailedError: no conformer could be embedded.
    """
    ids: list[int] = []
    for random_coords in (False, True):
        params = rdDistGeom.ETKDGv3()
        params.randomSeed = int(seed)  # type: ignore[assignment]  # rdkit stubs
        params.numThreads = 1  # type: ignore[assignment]
        params.useRandomCoords = random_coords  # type: ignore[assignment]
        if timeout:
            params.timeout = max(1, int(math.ceil(timeout)))  # type: ignore[assignment]
        with BlockLogs():
            ids = list(rdDistGeom.EmbedMultipleConfs(mol, int(n), params))
        if ids:
            return ids
    raise EmbeddingFailedError(f"embedding failed: ETKDGv3 placed 0 of {n} conformers")


@contextlib.contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    """Silence a logger's warnings for the block (counts go into the stats instead)."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _same_connectivity(mol: Chem.Mol, conf_id: int) -> bool:
    """Do the conformer's interatomic distances give the molecule's own bonds?"""
    from rdkit.Chem import rdDetermineBonds

    probe = Chem.RWMol(Chem.Mol(mol, confId=conf_id))
    for bond in list(probe.GetBonds()):
        probe.RemoveBond(bond.GetBeginAtomIdx(), bond.GetEndAtomIdx())
    with BlockLogs():
        rdDetermineBonds.DetermineConnectivity(probe, useHueckel=False)

    def bonds(m: Chem.Mol) -> set[tuple[int, ...]]:
        return {tuple(sorted((b.GetBeginAtomIdx(), b.GetEndAtomIdx()))) for b in m.GetBonds()}

    return bonds(probe) == bonds(mol)


def select_conformers(
    xyz: np.ndarray,
    matches: np.ndarray,
    energies: np.ndarray,
    window: float,
    rms: float,
) -> tuple[list[int], int, int]:
    """Energy window, then greedy RMSD de-duplication in energy order.

    Conformer ``i`` is a candidate when ``energies[i] - min(energies) <= window``; walking the
    candidates from the lowest energy up, one is kept when its symmetry-aware RMSD to every
    conformer kept so far is ``>= rms`` (:func:`rdconfvae.embedding.prune.prune_indices`).

    Shapes:
        xyz: (K, N, 3) heavy-atom coordinates, Angstrom; matches: (M, N) symmetry matches;
        energies: (K,) kcal/mol.

    Returns:
        ``(kept, n_above_window, n_duplicates)``; ``kept`` in energy order (ties: lower index
        first).
    """
    e = np.asarray(energies, dtype=np.float64)
    order = sorted(range(len(e)), key=lambda i: (e[i], i))
    emin = e[order[0]]
    cands = [i for i in order if e[i] - emin <= window]
    n_above = len(order) - len(cands)
    if rms <= 0 or len(cands) < 2:
        return cands, n_above, 0
    d = metrics.superposed_rmsd(xyz[cands], xyz[cands], matches)
    local = prune_indices(d, rms, order=list(range(len(cands))))
    kept = [cands[j] for j in local]  # ascending local index = energy order
    return kept, n_above, len(cands) - len(kept)


def _heavy_xyz(mol: Chem.Mol, ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
    heavy_idx = [a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() > 1]
    xyz = np.stack([mol.GetConformer(i).GetPositions()[heavy_idx] for i in ids])
    heavy = metrics.heavy_atom_mol(mol)
    return xyz.astype(np.float64), metrics.symmetry_matches(heavy, heavy)


def refine_ensemble(mol: Chem.Mol, options: BuildOptions) -> Ensemble:
    """Minimise, filter, de-duplicate and weight the conformers already on ``mol``.

    ``mol`` (explicit H, conformers from :func:`embed_conformers`) is not modified.

    Raises:
        UnsupportedMoleculeError: MMFF94s has no parameters for the molecule.
        EmbeddingFailedError: no conformer survives minimisation and the stereo check.
        ImportError: ``options.xtb`` without tblite.
    """
    work = Chem.Mol(mol)
    ids = [c.GetId() for c in work.GetConformers()]
    stats = dict.fromkeys(STAT_KEYS, 0)
    stats["embedded"] = len(ids)
    with _quiet("rdconfvae.forcefield.mmff"), BlockLogs():
        res = mmff_minimize(
            work,
            dielectric=options.dielectric,
            dielectric_constant=options.eps,
            max_iters=options.max_iters,
        )
    if res is None:
        raise UnsupportedMoleculeError("MMFF cannot type: MMFF94s lacks parameters for it")
    energy = {r.conf_id: r.energy for r in res if r.converged}
    stats["not_converged"] = len(ids) - len(energy)
    ids = [i for i in ids if i in energy]
    stereo_ok = metrics.stereo_preserved(work, ids) if ids else []
    kept_ids = [i for i, ok in zip(ids, stereo_ok, strict=True) if ok]
    stats["stereo_changed"] = len(ids) - len(kept_ids)
    ids = kept_ids
    if not ids:
        raise EmbeddingFailedError(
            f"no conformer left: of {stats['embedded']}, {stats['not_converged']} did not "
            f"converge in {options.max_iters} MMFF steps and {stats['stereo_changed']} "
            "changed stereo"
        )
    xyz, matches = _heavy_xyz(work, ids)
    e = np.array([energy[i] for i in ids])
    if options.xtb:
        # xTB costs ~100x MMFF: re-optimise only the distinct conformers within twice the
        # window (so that xTB may reorder them), then window and de-duplicate again.
        pre, pre_above, pre_dup = select_conformers(
            xyz, matches, e, 2.0 * options.window, options.rms
        )
        stats["above_window"], stats["duplicates"] = pre_above, pre_dup
        ids = [ids[k] for k in pre]
        e_list, kept_ids = [], []
        for cid in ids:
            try:
                e_x, conv = xtb_optimize(work, cid, solvent=options.xtb_solvent)
            except RuntimeError:
                conv = False
            if conv and _same_connectivity(work, cid) and metrics.stereo_preserved(work, [cid])[0]:
                kept_ids.append(cid)
                e_list.append(e_x)
        stats["xtb_failed"] = len(ids) - len(kept_ids)
        ids = kept_ids
        if not ids:
            raise EmbeddingFailedError(
                "xTB failed: no conformer converged with its bonds and stereo intact"
            )
        xyz, matches = _heavy_xyz(work, ids)
        e = np.array(e_list)
    kept, n_above, n_dup = select_conformers(xyz, matches, e, options.window, options.rms)
    stats["above_window"] += n_above
    stats["duplicates"] += n_dup
    if options.max_confs is not None and len(kept) > options.max_confs:
        stats["capped"] = len(kept) - options.max_confs
        kept = kept[: options.max_confs]
    stats["kept"] = len(kept)
    out = Chem.Mol(work)
    out.RemoveAllConformers()
    for k in kept:
        conf = Chem.Conformer(work.GetConformer(ids[k]))
        conf.Set3D(True)
        out.AddConformer(conf, assignId=True)
    rel = e[kept] - e[kept[0]]
    with BlockLogs():
        smiles = Chem.MolToSmiles(Chem.RemoveHs(out))
    return Ensemble(
        mol=out,
        energies=rel,
        weights=boltzmann_weights(rel, options.temperature),
        smiles=smiles,
        stats=stats,
    )


def build_ensemble(item: str | Chem.Mol, options: BuildOptions, index: int = 0) -> Ensemble:
    """The whole recipe for one molecule (SMILES or ``Chem.Mol``) with record index ``index``.

    Raises:
        InvalidInputError, UnsupportedMoleculeError, EmbeddingFailedError: the molecule cannot
            be built; the message starts with the reason's kind (``"invalid SMILES: ..."``).
        ImportError: ``options.xtb`` without tblite.
    """
    mol, n_assigned = prepare_molecule(item, options.allowed_elements)
    n_rot = rdMolDescriptors.CalcNumRotatableBonds(mol)
    embed_conformers(
        mol, options.sample_count(n_rot), molecule_seed(options.seed, index), options.timeout
    )
    ens = refine_ensemble(mol, options)
    ens.stats["stereo_assigned"] = n_assigned
    return ens


def _sdf_text(ens: Ensemble, name: str, index: int, method: str) -> str:
    """SDF records of one ensemble: title ``name``, energy and weight as SD properties."""
    mol = Chem.Mol(ens.mol)
    mol.SetProp("_Name", name)
    parts = []
    for rank, conf in enumerate(mol.GetConformers()):
        props = (
            ("record_index", str(index)),
            ("smiles", ens.smiles),
            ("conformer", str(rank)),
            (ENERGY_PROP, f"{ens.energies[rank]:.6f}"),
            (WEIGHT_PROP, repr(float(ens.weights[rank]))),
            ("energy_method", method),
        )
        block = Chem.MolToMolBlock(mol, confId=conf.GetId())
        parts.append(block + "".join(f">  <{k}>\n{v}\n\n" for k, v in props) + "$$$$\n")
    return "".join(parts)


@dataclass(frozen=True)
class MoleculeResult:
    """Picklable outcome for one input record (the unit of work of :func:`build_file`)."""

    index: int
    name: str
    sdf: str = ""  # SDF text, '' when failed
    error: str = ""  # "kind: detail" when failed
    stats: dict[str, int] = field(default_factory=dict)
    cpu_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.error


def build_one(item: Any, name: str, index: int, options: BuildOptions) -> MoleculeResult:
    """:func:`build_ensemble` for one record, its failure turned into a reason (never raises
    for the molecule's own faults; ``ImportError`` for a missing tblite does raise)."""
    t0 = time.process_time()
    try:
        if item is None:
            raise InvalidInputError("unreadable record")
        ens = build_ensemble(item, options, index)
        text = _sdf_text(ens, name, index, options.energy_method)
        return MoleculeResult(
            index, name, sdf=text, stats=ens.stats, cpu_s=time.process_time() - t0
        )
    except RdConfVAEError as exc:
        error = str(exc)
    except (ValueError, RuntimeError) as exc:  # RDKit invariant violations and the like
        error = f"internal error: {type(exc).__name__}: {exc}"
    error = " ".join(error.split())  # one line, no tabs
    return MoleculeResult(index, name, error=error, cpu_s=time.process_time() - t0)

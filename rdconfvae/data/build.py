"""Reference conformer ensembles from SMILES: the recipe behind ``python -m rdconfvae.data build``.

Per molecule (:func:`build_ensemble`)::

    graph (explicit H, every stereo element specified)
      -> ETKDGv3 over-sampling (``samples`` embeddings, per-molecule seed)
      -> MMFF94s minimisation to convergence (distance-dependent dielectric eps = 4r by default)
      -> conformers whose 3D stereo differs from the graph dropped
      -> [optional GFN2-xTB re-optimisation with tblite, see :func:`xtb_optimize`]
      -> energy window (kcal/mol above the lowest conformer)
      -> symmetry-aware heavy-atom RMSD de-duplication, greedy in energy order
      -> Boltzmann weights at ``temperature`` (K), summing to 1

Files (:func:`build_file`): one multi-conformer SDF (``.sdf`` or ``.sdf.gz``, one record per
conformer, records of a molecule contiguous and in energy order), readable with
:func:`read_built_ensembles` (that is :func:`~rdconfvae.data.readers.read_sdf_ensembles` with
:data:`ENERGY_PROP` and :data:`WEIGHT_PROP`); ``OUT.errors.tsv`` (name, reason: every molecule
that produced no ensemble); ``OUT.manifest.json`` (options, counts, failures, times);
``OUT.progress.json`` (the resume checkpoint).

Determinism: the seed of a molecule is derived from the run seed and the molecule's record
index in the input (:func:`molecule_seed`), so ``workers`` and ``shard`` never change a
molecule's ensemble, and output order is input order. Units: Angstrom, kcal/mol, Kelvin.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
from rdkit import Chem, rdBase
from rdkit.Chem import rdDistGeom, rdMolDescriptors
from rdkit.Chem.EnumerateStereoisomers import (
    EnumerateStereoisomers,
    StereoEnumerationOptions,
)
from rdkit.rdBase import BlockLogs

from rdconfvae import batch, metrics
from rdconfvae.batch import write_json_atomic
from rdconfvae.data.readers import HARTREE_TO_KCAL, boltzmann_weights, read_sdf_ensembles
from rdconfvae.data.records import ALLOWED_ELEMENTS, MolRecord
from rdconfvae.errors import (
    DataError,
    EmbeddingFailedError,
    InvalidInputError,
    RdConfVAEError,
    UnsupportedMoleculeError,
)
from rdconfvae.hashing import sha256_file
from rdconfvae.prune import prune_indices
from rdconfvae.refine import mmff_minimize

__all__ = [
    "DEFAULT_RMS",
    "DEFAULT_SAMPLES",
    "DEFAULT_WINDOW",
    "ENERGY_PROP",
    "WEIGHT_PROP",
    "BuildOptions",
    "Ensemble",
    "MoleculeResult",
    "build_ensemble",
    "build_file",
    "build_one",
    "embed_conformers",
    "molecule_seed",
    "ordered_map",
    "prepare_molecule",
    "read_built_ensembles",
    "refine_ensemble",
    "select_conformers",
    "xtb_optimize",
]

log = logging.getLogger(__name__)

#: ETKDGv3 embeddings per molecule (chosen by ``coverage`` on Platinum, see docs/training-data.md).
DEFAULT_SAMPLES = 100
#: Energy window, kcal/mol above the molecule's lowest conformer.
DEFAULT_WINDOW = 20.0
#: De-duplication threshold: heavy-atom RMSD, Angstrom.
DEFAULT_RMS = 0.5
#: SD property with the conformer energy, kcal/mol relative to the molecule's lowest conformer.
ENERGY_PROP = "rel_energy_kcal_mol"
#: SD property with the conformer's Boltzmann weight (a molecule's weights sum to 1).
WEIGHT_PROP = "boltzmann_weight"

#: 1 Bohr in Angstrom (CODATA 2018).
BOHR = 0.529177210903
_PROGRESS_FORMAT = 1
_STAT_KEYS = (
    "embedded",
    "not_converged",
    "stereo_changed",
    "xtb_failed",
    "above_window",
    "duplicates",
    "capped",
    "kept",
)


# --------------------------------------------------------------------------- options


@dataclass(frozen=True, slots=True)
class BuildOptions:
    """The ensemble recipe. Frozen: unknown attributes raise ``AttributeError``.

    Attributes:
        samples: ETKDGv3 embeddings per molecule (at least; see ``samples_per_rotor``).
        samples_per_rotor: embeddings per rotatable bond; a molecule gets
            ``max(samples, samples_per_rotor * rotatable bonds)`` (0: always ``samples``).
        dielectric: MMFF electrostatics, ``"distance"`` (eps = c r) or ``"constant"`` (eps = c).
        dielectric_constant: c; None means 4.0 for ``"distance"`` and 1.0 (gas phase) for
            ``"constant"``.
        window: energy window, kcal/mol above the lowest conformer (``inf``: no window).
        rms: de-duplication threshold, heavy-atom RMSD in Angstrom (0: no de-duplication).
        max_confs: keep at most this many (lowest-energy) conformers; None keeps all.
        xtb: re-optimise with GFN2-xTB (tblite) and use its energies.
        xtb_solvent: ALPB solvent name for xTB (e.g. ``"water"``); None is gas phase.
        temperature: Boltzmann temperature, K.
        seed: run seed (>= 0); each molecule's seed derives from it and its record index.
        max_iters: MMFF iteration cap per conformer (unconverged conformers are dropped).
        timeout: ETKDG wall-time limit per molecule, seconds (None: none). A molecule that hits
            it keeps the conformers embedded so far, which depends on machine speed.
        allowed_elements: molecules with another element are rejected; None allows any.
    """

    samples: int = DEFAULT_SAMPLES
    samples_per_rotor: int = 0
    dielectric: Literal["distance", "constant"] = "distance"
    dielectric_constant: float | None = None
    window: float = DEFAULT_WINDOW
    rms: float = DEFAULT_RMS
    max_confs: int | None = None
    xtb: bool = False
    xtb_solvent: str | None = None
    temperature: float = 298.15
    seed: int = 0
    max_iters: int = 5000
    timeout: float | None = None
    allowed_elements: tuple[str, ...] | None = ALLOWED_ELEMENTS

    def __post_init__(self) -> None:
        if self.allowed_elements is not None and not isinstance(self.allowed_elements, tuple):
            object.__setattr__(self, "allowed_elements", tuple(self.allowed_elements))
        checks = [
            (int(self.samples) >= 1, f"samples must be >= 1, got {self.samples}"),
            (self.samples_per_rotor >= 0, "samples_per_rotor must be >= 0"),
            (
                self.dielectric in ("distance", "constant"),
                f"dielectric must be 'distance' or 'constant', got {self.dielectric!r}",
            ),
            (
                self.dielectric_constant is None or self.dielectric_constant > 0,
                "dielectric_constant must be > 0",
            ),
            (self.window > 0, f"window must be > 0 kcal/mol, got {self.window}"),
            (self.rms >= 0, f"rms must be >= 0 A, got {self.rms}"),
            (self.max_confs is None or self.max_confs >= 1, "max_confs must be >= 1 or None"),
            (self.temperature > 0, "temperature must be > 0 K"),
            (0 <= self.seed < 2**63, f"seed must be >= 0, got {self.seed}"),
            (self.max_iters >= 1, "max_iters must be >= 1"),
            (self.timeout is None or self.timeout > 0, "timeout must be > 0 s or None"),
        ]
        for ok, message in checks:
            if not ok:
                raise InvalidInputError(message)

    @property
    def eps(self) -> float:
        """The dielectric constant c actually used."""
        if self.dielectric_constant is not None:
            return float(self.dielectric_constant)
        return 4.0 if self.dielectric == "distance" else 1.0

    @property
    def energy_method(self) -> str:
        """Human-readable name of the method that gives the final energies."""
        if self.xtb:
            return "GFN2-xTB" + (f" ALPB({self.xtb_solvent})" if self.xtb_solvent else " gas")
        eps = f"{self.eps:g}r" if self.dielectric == "distance" else f"{self.eps:g}"
        return f"MMFF94s eps={eps}"

    def sample_count(self, n_rotatable: int) -> int:
        """ETKDG embeddings for a molecule with ``n_rotatable`` rotatable bonds."""
        return max(int(self.samples), int(self.samples_per_rotor) * int(n_rotatable))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``from_dict`` inverts it)."""
        d = asdict(self)
        if d["allowed_elements"] is not None:
            d["allowed_elements"] = list(d["allowed_elements"])
        if math.isinf(d["window"]):
            d["window"] = None
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BuildOptions:
        """Inverse of :meth:`to_dict`; unknown keys raise ``InvalidInputError``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidInputError(f"unknown build option(s): {', '.join(unknown)}")
        d = dict(data)
        if "window" in d and d["window"] is None:
            d["window"] = math.inf
        if d.get("allowed_elements") is not None:
            d["allowed_elements"] = tuple(d["allowed_elements"])
        return cls(**d)


# --------------------------------------------------------------------------- one molecule


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


def _tblite():
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
    calculator = _tblite()
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
    conformer kept so far is ``>= rms`` (:func:`rdconfvae.prune.prune_indices`).

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
    stats = dict.fromkeys(_STAT_KEYS, 0)
    stats["embedded"] = len(ids)
    with _quiet("rdconfvae.refine"), BlockLogs():
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


# --------------------------------------------------------------------------- parallel map


def _init_worker(parent: int) -> None:
    """Worker start-up: RDKit and per-conformer warnings quiet (they are counted instead);
    the worker ends when its parent dies (a SIGKILLed run would otherwise leave idle workers
    waiting on the task queue forever)."""
    from rdkit import RDLogger

    from rdconfvae.workers import exit_with_parent

    RDLogger.DisableLog("rdApp.*")  # type: ignore[attr-defined]  # absent from rdkit stubs
    logging.getLogger("rdconfvae.refine").setLevel(logging.ERROR)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    exit_with_parent(parent)


def ordered_map(
    fn: Callable[..., Any], items: Iterable[Any], workers: int, *args: Any
) -> Iterator[Any]:
    """:func:`rdconfvae.batch.ordered_map` with the builder's worker start-up: RDKit quiet,
    no model loaded, the worker ends with its parent."""
    return batch.ordered_map(
        fn, items, workers, *args, initializer=_init_worker, initargs=(os.getpid(),)
    )


# --------------------------------------------------------------------------- the file job


def _side_path(out: Path, suffix: str) -> Path:
    return out.with_name(out.name + suffix)


def _parse_shard(shard: str | tuple[int, int] | None) -> tuple[int, int]:
    if shard is None:
        return 0, 1
    if isinstance(shard, str):
        try:
            i_text, n_text = shard.split("/")
            i, n = int(i_text), int(n_text)
        except ValueError:
            raise InvalidInputError(f"shard must look like i/n (e.g. 0/4), got {shard!r}") from None
    else:
        i, n = shard
    if n < 1 or not 0 <= i < n:
        raise InvalidInputError(f"shard i/n needs n >= 1 and 0 <= i < n, got {i}/{n}")
    return i, n


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    """Refuse a second build writing the same output at the same time."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock
        yield
        return
    with open(path, "a") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise DataError(f"another build is writing this output (lock {path})") from None
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
            with contextlib.suppress(OSError):
                path.unlink()


def _fresh_state() -> dict[str, Any]:
    return {
        "done": 0,
        "ok": 0,
        "failed": 0,
        "out_offset": 0,
        "err_offset": 0,
        "stats": dict.fromkeys((*_STAT_KEYS, "stereo_assigned"), 0),
        "failures_by_kind": {},
        "cpu_s": 0.0,
        "wall_s": 0.0,
        "sittings": 0,
    }


def build_file(
    input_path: str | Path,
    output_path: str | Path,
    options: BuildOptions | None = None,
    *,
    workers: int = 1,
    limit: int | None = None,
    shard: str | tuple[int, int] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Build ensembles for every molecule of ``input_path`` into ``output_path``.

    Input: ``.smi`` (``SMILES name`` per line, ``#`` comments), ``.csv`` (``smiles`` and
    optional ``name`` columns) or ``.sdf[.gz]`` (graph and stereo of each record), read by
    :func:`rdconfvae.batch.read_molecules`; record indices count from 0 in file order.

    Args:
        input_path: the molecules.
        output_path: ``.sdf`` or ``.sdf.gz``; side files ``OUT.errors.tsv`` (name, reason per
            failed molecule), ``OUT.manifest.json`` and ``OUT.progress.json`` next to it.
        options: the recipe (default :class:`BuildOptions`).
        workers: worker processes (0: one per CPU); the output does not depend on it.
        limit: handle only the first ``limit`` records of the selection (a later
            ``resume=True`` run with a larger or no limit continues after them).
        shard: ``"i/n"``: only records with ``index % n == i``.
        resume: continue an interrupted run: the files are cut back to the last checkpoint
            (taken after every molecule) and the run goes on; refused when the input, options
            or shard differ. Without a checkpoint it starts from the beginning.
        overwrite: replace an existing output instead of refusing.
        progress: progress bar on stderr (rate, ETA); None shows it only on a terminal.

    Returns:
        The manifest (also written to ``OUT.manifest.json``).

    Raises:
        InvalidInputError: bad arguments, or an input with no molecule.
        DataError: the output exists (without ``resume``/``overwrite``), or the checkpoint
            belongs to another input, options or shard.
        ImportError: ``options.xtb`` without tblite.
    """
    from tqdm.auto import tqdm

    from rdconfvae.batch import count_records, read_molecules

    options = options or BuildOptions()
    src, out = Path(input_path), Path(output_path)
    if not out.name.lower().endswith((".sdf", ".sdf.gz")):
        raise InvalidInputError(f"output must end in .sdf or .sdf.gz, got {out.name}")
    if not src.is_file():
        raise InvalidInputError(f"input file {src} does not exist")
    if limit is not None and limit < 0:
        raise InvalidInputError("limit must be >= 0")
    if options.xtb:
        _tblite()  # fail before any work
    shard_i, shard_n = _parse_shard(shard)
    workers = (os.cpu_count() or 1) if workers == 0 else max(int(workers), 1)
    errors = _side_path(out, ".errors.tsv")
    prog_path = _side_path(out, ".progress.json")
    manifest_path = _side_path(out, ".manifest.json")
    out.parent.mkdir(parents=True, exist_ok=True)

    n_records = count_records(src)
    if n_records == 0:
        raise InvalidInputError(f"{src}: no molecules in the input (empty file?)")
    n_shard = max(0, (n_records - shard_i + shard_n - 1) // shard_n)
    n_target = n_shard if limit is None else min(limit, n_shard)
    identity = {
        "format": _PROGRESS_FORMAT,
        "input_sha256": sha256_file(src),
        "options": options.to_dict(),
        "shard": [shard_i, shard_n],
    }

    with _lock(_side_path(out, ".lock")):
        state = _fresh_state()
        if resume and prog_path.is_file():
            saved = json.loads(prog_path.read_text(encoding="utf-8"))
            for key, value in identity.items():
                then = saved.get(key)
                if then == value:
                    continue
                if isinstance(then, dict) and isinstance(value, dict):
                    diff = ", ".join(
                        f"{k}: {then.get(k)!r} then, {value.get(k)!r} now"
                        for k in sorted(set(then) | set(value))
                        if then.get(k) != value.get(k)
                    )
                else:
                    diff = f"{then!r} then, {value!r} now"
                what = "the input file" if key == "input_sha256" else key
                raise DataError(
                    f"cannot resume {out}: {what} differs from the interrupted run ({diff}); "
                    "rerun with the same input and options, or start again with --overwrite"
                )
            state = {k: saved[k] for k in state}
            log.info("resuming %s after %d molecules", out, state["done"])
        elif resume:
            log.info("no checkpoint at %s: starting from the beginning", prog_path)
        elif not overwrite and (out.exists() or prog_path.exists()):
            raise DataError(
                f"{out} exists: pass --resume to continue it or --overwrite to start again"
            )
        already = state["done"]
        state["sittings"] += 1
        t0 = time.perf_counter()

        def save(complete: bool) -> None:
            write_json_atomic(prog_path, {**identity, **state, "complete": complete})

        def selection() -> Iterator[Any]:
            k = 0  # position within the shard
            for rec in read_molecules(src):
                if rec.index % shard_n != shard_i:
                    continue
                if k >= n_target:
                    return
                if k >= already:
                    yield rec
                k += 1

        sink = batch.ResumableOutput(
            out, errors, state["out_offset"], state["err_offset"], error=DataError
        )
        if already == 0:
            state["out_offset"], state["err_offset"] = sink.checkpoint()
            save(False)
        bar = tqdm(
            total=n_target,
            initial=min(already, n_target),
            unit="mol",
            desc=out.name,
            disable=None if progress is None else not progress,
            dynamic_ncols=True,
        )
        names: set[str] = set()
        n_dup_names = 0  # in this sitting
        try:
            for result in ordered_map(_work, selection(), workers, options):
                state["done"] += 1
                state["cpu_s"] += result.cpu_s
                if result.ok:
                    sink.write_record(result.sdf)
                    state["ok"] += 1
                    for key, value in result.stats.items():
                        state["stats"][key] = state["stats"].get(key, 0) + int(value)
                else:
                    sink.write_error(result.name, result.error)
                    state["failed"] += 1
                    kind = result.error.split(":", 1)[0]
                    state["failures_by_kind"][kind] = state["failures_by_kind"].get(kind, 0) + 1
                    log.warning("%s (record %d): %s", result.name, result.index, result.error)
                if result.name in names:
                    if not n_dup_names:
                        log.warning(
                            "name %r occurs more than once: read the output with "
                            "group_by='prop:record_index' (count in the manifest)",
                            result.name,
                        )
                    n_dup_names += 1
                names.add(result.name)
                state["out_offset"], state["err_offset"] = sink.checkpoint()
                state["wall_s"] += time.perf_counter() - t0
                t0 = time.perf_counter()
                save(False)
                bar.update(1)
        finally:
            bar.close()
            sink.close()
        complete = state["done"] >= n_shard
        save(complete)
        manifest = _manifest(
            src,
            out,
            errors,
            options,
            identity,
            state,
            n_records,
            n_shard,
            limit,
            workers,
            complete,
        )
        manifest["counts"]["repeated_names_last_sitting"] = n_dup_names
        write_json_atomic(manifest_path, manifest)
    return manifest


def _work(record: Any, options: BuildOptions) -> MoleculeResult:
    if record.item is None:
        return MoleculeResult(
            record.index, record.name, error=f"unreadable record: {record.problem}"
        )
    return build_one(record.item, record.name, record.index, options)


def _manifest(
    src: Path,
    out: Path,
    errors: Path,
    options: BuildOptions,
    identity: dict[str, Any],
    state: dict[str, Any],
    n_records: int,
    n_shard: int,
    limit: int | None,
    workers: int,
    complete: bool,
) -> dict[str, Any]:
    ok, stats = state["ok"], state["stats"]
    return {
        "format": "rdconfvae-ensembles",
        "complete": complete,
        "input": {
            "file": str(src),
            "sha256": identity["input_sha256"],
            "records": n_records,
            "shard": f"{identity['shard'][0]}/{identity['shard'][1]}",
            "records_in_shard": n_shard,
            "limit": limit,
        },
        "options": options.to_dict(),
        "energy_method": options.energy_method,
        "recipe": "ETKDGv3 -> MMFF94s to convergence"
        + (" -> GFN2-xTB" if options.xtb else "")
        + " -> stereo check -> energy window -> heavy-atom RMSD dedupe -> Boltzmann weights",
        "output": {
            "file": str(out),
            "bytes": out.stat().st_size,
            "sha256": sha256_file(out),
            "energy_prop": ENERGY_PROP,
            "weight_prop": WEIGHT_PROP,
            "read_with": "rdconfvae.data.read_built_ensembles(path)",
        },
        "counts": {
            "molecules_done": state["done"],
            "molecules_ok": ok,
            "molecules_failed": state["failed"],
            "conformers": stats,
            "mean_conformers_per_molecule": round(stats["kept"] / ok, 2) if ok else None,
        },
        "failures": {"file": str(errors), "by_kind": state["failures_by_kind"]},
        "time": {
            "wall_s": round(state["wall_s"], 2),
            "cpu_s": round(state["cpu_s"], 2),
            "cpu_s_per_molecule": round(state["cpu_s"] / state["done"], 3)
            if state["done"]
            else None,
            "sittings": state["sittings"],
            "workers_last_sitting": workers,
        },
        "software": {
            "rdkit": rdBase.rdkitVersion,
            "numpy": np.__version__,
            "python": platform.python_version(),
            "tblite": _dist_version("tblite") if options.xtb else None,
        },
    }


def _dist_version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def read_built_ensembles(path: str | Path, **kwargs: Any) -> list[MolRecord]:
    """Read a :func:`build_file` output: one record per molecule, energies and weights set.

    :func:`~rdconfvae.data.readers.read_sdf_ensembles` with ``energy_prop=ENERGY_PROP`` and
    ``weight_prop=WEIGHT_PROP``; other keyword arguments (``group_by``,
    ``allowed_elements``, ``skipped``) pass through.
    """
    kwargs.setdefault("energy_prop", ENERGY_PROP)
    kwargs.setdefault("weight_prop", WEIGHT_PROP)
    return read_sdf_ensembles(path, **kwargs)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use: python -m rdconfvae.data build ...")

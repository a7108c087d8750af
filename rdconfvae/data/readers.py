"""Readers for reference conformer ensembles users already have: GEOM and multi-conformer SDF.

Both return :class:`~rdconfvae.data.records.MolRecord` objects (one graph, its conformers, their
weights and energies) and go on past bad entries: every molecule or record left out is logged
with its reason and, when a ``skipped`` list is passed, appended to it as ``(name, reason)``.

Energies are returned in kcal/mol relative to the lowest conformer of the molecule's ensemble.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import pickle
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from rdkit import Chem
from rdkit.rdBase import BlockLogs

from rdconfvae.data.records import ALLOWED_ELEMENTS, MolRecord
from rdconfvae.errors import DataError

__all__ = [
    "ENERGY_UNITS",
    "HARTREE_TO_KCAL",
    "boltzmann_weights",
    "read_geom_rdkit_folder",
    "read_sdf_ensembles",
]

logger = logging.getLogger(__name__)

#: 1 Hartree in kcal/mol (CODATA 2018).
HARTREE_TO_KCAL = 627.5094740631
#: Factors converting energy units to kcal/mol.
ENERGY_UNITS = {
    "kcal/mol": 1.0,
    "kj/mol": 1.0 / 4.184,
    "hartree": HARTREE_TO_KCAL,
    "ev": 23.060547830619026,
}
#: Boltzmann constant in kcal/(mol K).
_KB_KCAL = 0.0019872042586408316

# errors unpickling an untrusted or damaged file can raise
_UNPICKLE_ERRORS = (
    pickle.UnpicklingError,
    EOFError,
    AttributeError,
    ImportError,
    IndexError,
    KeyError,
    TypeError,
    ValueError,
    RuntimeError,
    MemoryError,  # a damaged length field asks for an absurd allocation
)


def boltzmann_weights(energies: np.ndarray, temperature: float = 298.15) -> np.ndarray:
    """Normalised Boltzmann weights of ``energies`` (kcal/mol) at ``temperature`` (K)."""
    e = np.asarray(energies, dtype=np.float64)
    w = np.exp(-(e - e.min()) / (_KB_KCAL * temperature))
    return w / w.sum()


def _skip(skipped: list[tuple[str, str]] | None, name: str, reason: str) -> None:
    logger.warning("skipped %s: %s", name, reason)
    if skipped is not None:
        skipped.append((name, reason))


def _bad_elements(mol: Chem.Mol, allowed: Iterable[str] | None) -> list[str]:
    if allowed is None:
        return []
    allowed = set(allowed)
    return sorted({a.GetSymbol() for a in mol.GetAtoms()} - allowed)


def _graph_key(mol: Chem.Mol) -> tuple:
    """Atom elements and charges in order plus the bond set: equal keys mean same atom order."""
    atoms = tuple((a.GetAtomicNum(), a.GetFormalCharge()) for a in mol.GetAtoms())
    bonds = frozenset(
        (min(b.GetBeginAtomIdx(), b.GetEndAtomIdx()), max(b.GetBeginAtomIdx(), b.GetEndAtomIdx()))
        for b in mol.GetBonds()
    )
    return atoms, bonds


def _flat_smiles(mol: Chem.Mol) -> str:
    """Canonical heavy-atom SMILES without stereo: the graph the ensemble must share."""
    with BlockLogs():
        heavy = Chem.RemoveAllHs(mol, sanitize=False)
        return Chem.MolToSmiles(heavy, isomericSmiles=False)


def _stereo_smiles(mol: Chem.Mol, conf_id: int = -1) -> str:
    """Canonical isomeric SMILES with stereo taken from the conformer's 3D coordinates."""
    m = Chem.Mol(mol, confId=conf_id) if conf_id >= 0 else Chem.Mol(mol)
    with BlockLogs():
        Chem.AssignStereochemistryFrom3D(m, replaceExistingTags=True)
        return Chem.MolToSmiles(Chem.RemoveAllHs(m, sanitize=False))


def _merge(mols: list[Chem.Mol], name: str) -> Chem.Mol:
    """One molecule (graph of ``mols[0]``, stereo from its 3D) carrying every conformer."""
    base = Chem.Mol(mols[0])
    base.RemoveAllConformers()
    for m in mols:
        conf = Chem.Conformer(m.GetConformer())
        conf.Set3D(True)
        base.AddConformer(conf, assignId=True)
    with BlockLogs():
        Chem.AssignStereochemistryFrom3D(base, confId=0, replaceExistingTags=True)
    base.SetProp("_Name", name)
    return base


# --------------------------------------------------------------------------------------------
# GEOM rdkit_folder


def read_geom_rdkit_folder(
    summary: str | Path,
    *,
    top_k: int | None = 5,
    limit: int | None = None,
    allowed_elements: Iterable[str] | None = ALLOWED_ELEMENTS,
    skipped: list[tuple[str, str]] | None = None,
) -> list[MolRecord]:
    """Read GEOM's ``rdkit_folder`` layout into records, ``top_k`` conformers per molecule.

    Layout: a summary JSON (``summary_drugs.json``) mapping SMILES to a dict with
    ``pickle_path`` (relative to the summary's folder), and one pickle per molecule holding
    ``{"conformers": [{"rd_mol": Chem.Mol, "boltzmannweight": float, "totalenergy": Hartree},
    ...]}``.

    .. warning:: Unpickling runs code stored in the file. Read only GEOM files you trust
       (downloaded from the GEOM authors' archive yourself), never pickles from others.

    Per molecule: conformers whose heavy-atom graph differs from the SMILES graph, or that
    have more than one fragment, make the whole molecule skipped (GEOM holds a few ensembles in
    which CREST broke or formed bonds); conformers whose 3D stereo differs from that of the
    highest-weighted one are dropped; the ``top_k`` highest-weighted remaining conformers are
    kept (all if None), their Boltzmann weights renormalised to sum to 1. Energies:
    ``totalenergy`` converted to kcal/mol relative to the lowest conformer of the ensemble,
    None when the pickle has none.

    Args:
        summary: the summary JSON file.
        top_k: conformers kept per molecule, by weight; None keeps all.
        limit: read at most this many molecules of the summary (in file order).
        allowed_elements: skip molecules with other elements; None keeps every element.
        skipped: if given, ``(smiles, reason)`` is appended for every molecule left out.

    Returns:
        Records named by the summary's SMILES, ``split`` ``""``.

    Raises:
        DataError: the summary file is missing or not a JSON object.
    """
    summary = Path(summary)
    if top_k is not None and top_k < 1:
        raise ValueError("top_k must be >= 1 or None")
    try:
        with open(summary, encoding="utf-8") as fh:
            index = json.load(fh)
    except OSError as exc:
        raise DataError(f"cannot read GEOM summary {summary}: {exc}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{summary}: not a JSON file ({exc})") from exc
    if not isinstance(index, dict):
        raise DataError(f"{summary}: expected a JSON object mapping SMILES to entries")
    root = summary.parent
    records: list[MolRecord] = []
    for n, (smiles, entry) in enumerate(index.items()):
        if limit is not None and n >= limit:
            break
        rec = _geom_molecule(smiles, entry, root, top_k, allowed_elements, skipped)
        if rec is not None:
            records.append(rec)
    return records


def _number(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def _geom_molecule(
    smiles: str,
    entry: object,
    root: Path,
    top_k: int | None,
    allowed: Iterable[str] | None,
    skipped: list[tuple[str, str]] | None,
) -> MolRecord | None:
    if not isinstance(entry, dict) or not entry.get("pickle_path"):
        _skip(skipped, smiles, "no pickle_path in the summary")
        return None
    path = root / str(entry["pickle_path"])
    try:
        with open(path, "rb") as fh:
            data = pickle.load(fh)  # noqa: S301 - documented: trusted GEOM files only
    except OSError as exc:
        _skip(skipped, smiles, f"cannot read {path}: {exc.strerror or exc}")
        return None
    except _UNPICKLE_ERRORS as exc:
        _skip(skipped, smiles, f"corrupted pickle {path.name}: {type(exc).__name__}: {exc}")
        return None
    confs = data.get("conformers") if isinstance(data, dict) else None
    if not confs or not isinstance(confs, list):
        _skip(skipped, smiles, f"{path.name} holds no conformers")
        return None
    mols, weights, energies = [], [], []
    for c in confs:
        mol = c.get("rd_mol") if isinstance(c, dict) else None
        if not isinstance(mol, Chem.Mol) or mol.GetNumConformers() < 1:
            _skip(skipped, smiles, f"{path.name}: a conformer entry has no rd_mol with coordinates")
            return None
        mols.append(mol)
        weights.append(_number(c.get("boltzmannweight")))
        energies.append(_number(c.get("totalenergy")))
    with BlockLogs():
        ref = Chem.MolFromSmiles(smiles)
    if ref is None:
        _skip(skipped, smiles, "the summary's SMILES does not parse")
        return None
    bad = _bad_elements(mols[0], allowed)
    if bad:
        _skip(skipped, smiles, f"element(s) {' '.join(bad)} outside the allowed set")
        return None
    ref_graph, order = _flat_smiles(ref), _graph_key(mols[0])
    for k, mol in enumerate(mols):
        if len(Chem.GetMolFrags(mol)) != 1:
            _skip(skipped, smiles, f"conformer {k} has {len(Chem.GetMolFrags(mol))} fragments")
            return None
        if _flat_smiles(mol) != ref_graph or _graph_key(mol) != order:
            _skip(skipped, smiles, f"conformer {k} graph differs from the SMILES graph")
            return None
    w = np.asarray(weights)
    if not np.all(np.isfinite(w)) or w.sum() <= 0:
        w = np.ones(len(mols))
    e_raw = np.asarray(energies)
    e = (e_raw - e_raw.min()) * HARTREE_TO_KCAL if np.all(np.isfinite(e_raw)) else None
    ranked = sorted(range(len(mols)), key=lambda k: (-w[k], k))
    ref_stereo = _stereo_smiles(mols[ranked[0]])
    consistent = [k for k in ranked if _stereo_smiles(mols[k]) == ref_stereo]
    if len(consistent) < len(ranked):
        logger.info(
            "%s: dropped %d conformer(s) whose 3D stereo differs from the top-weighted one",
            smiles,
            len(ranked) - len(consistent),
        )
    chosen = consistent[:top_k] if top_k is not None else consistent
    kept_w = w[chosen] / w[chosen].sum() if w[chosen].sum() > 0 else None
    if kept_w is None:
        kept_w = np.full(len(chosen), 1.0 / len(chosen))
    return MolRecord(
        name=smiles,
        mol=_merge([mols[k] for k in chosen], smiles),
        weights=kept_w,
        energies=None if e is None else e[chosen],
    )


# --------------------------------------------------------------------------------------------
# Multi-conformer SDF


def _open_sdf(path: Path):
    with open(path, "rb") as fh:
        magic = fh.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def _iter_sdf(path: Path) -> Iterator[tuple[int, Chem.Mol | None]]:
    with _open_sdf(path) as fh, BlockLogs():
        supplier = Chem.ForwardSDMolSupplier(fh, removeHs=False, sanitize=True)
        yield from enumerate(supplier)


def read_sdf_ensembles(
    path: str | Path,
    *,
    group_by: str = "name",
    energy_prop: str | None = None,
    energy_unit: str = "kcal/mol",
    weight_prop: str | None = None,
    temperature: float = 298.15,
    allowed_elements: Iterable[str] | None = ALLOWED_ELEMENTS,
    skipped: list[tuple[str, str]] | None = None,
) -> list[MolRecord]:
    """Read a multi-conformer SDF (``.sdf`` or gzip-compressed) into one record per molecule.

    Records are grouped into molecules by ``group_by``: ``"name"`` (the title line),
    ``"smiles"`` (canonical isomeric SMILES, stereo from 3D) or ``"prop:<NAME>"`` (an SD
    property, e.g. ``"prop:mol_id"`` for the DFT benchmark file). Groups need not be
    contiguous; molecules come out in order of first appearance. Every conformer of a molecule
    is put in the atom order of its first record (matched by substructure when the order
    differs, so symmetry-equivalent atoms may swap); a record whose graph does not match its
    group's is skipped.

    Weights: ``weight_prop`` normalised if given; else Boltzmann weights at ``temperature`` from
    the energies if ``energy_prop`` is given; else uniform. Energies (``energy_prop`` in
    ``energy_unit``, one of :data:`ENERGY_UNITS`) are returned in kcal/mol relative to the
    molecule's lowest conformer; a molecule with a record lacking the property gets None.

    Raises:
        DataError: the file is missing, empty or holds no readable record.
    """
    path = Path(path)
    unit = energy_unit.lower()
    if unit not in ENERGY_UNITS:
        raise ValueError(f"energy_unit must be one of {sorted(ENERGY_UNITS)}, got {energy_unit!r}")
    if group_by not in ("name", "smiles") and not group_by.startswith("prop:"):
        raise ValueError("group_by must be 'name', 'smiles' or 'prop:<NAME>'")
    if not path.is_file():
        raise DataError(f"SDF not found: {path}")
    groups: dict[str, list[tuple[int, Chem.Mol]]] = {}
    n_records = 0
    try:
        for i, mol in _iter_sdf(path):
            n_records += 1
            label = f"{path.name} record {i + 1}"
            if mol is None:
                _skip(skipped, label, "unreadable record (RDKit could not parse or sanitise it)")
                continue
            if mol.GetNumConformers() < 1 or not mol.GetConformer().Is3D():
                _skip(skipped, label, "no 3D coordinates")
                continue
            if group_by == "name":
                key = mol.GetProp("_Name").strip() if mol.HasProp("_Name") else ""
            elif group_by == "smiles":
                key = _stereo_smiles(mol)
            else:
                prop = group_by[5:]
                key = mol.GetProp(prop).strip() if mol.HasProp(prop) else ""
            if not key:
                _skip(skipped, label, f"no {group_by} to group by")
                continue
            groups.setdefault(key, []).append((i, mol))
    except (OSError, EOFError, SystemError) as exc:
        # SystemError: RDKit's supplier re-raises the EOFError of a truncated gzip stream
        # a truncated gzip stream: keep what was read before the damage
        _skip(skipped, path.name, f"file ends early or is damaged ({exc}); records before kept")
    if n_records == 0:
        raise DataError(f"{path}: no SDF records (empty file?)")
    if not groups:
        raise DataError(f"{path}: none of {n_records} records could be read")
    records = []
    for key, members in groups.items():
        rec = _sdf_molecule(
            key,
            members,
            energy_prop,
            ENERGY_UNITS[unit],
            weight_prop,
            temperature,
            allowed_elements,
            skipped,
        )
        if rec is not None:
            records.append(rec)
    return records


def _float_prop(mol: Chem.Mol, prop: str) -> float | None:
    if not mol.HasProp(prop):
        return None
    try:
        value = float(mol.GetProp(prop))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _sdf_molecule(
    key: str,
    members: list[tuple[int, Chem.Mol]],
    energy_prop: str | None,
    unit_factor: float,
    weight_prop: str | None,
    temperature: float,
    allowed: Iterable[str] | None,
    skipped: list[tuple[str, str]] | None,
) -> MolRecord | None:
    first = members[0][1]
    bad = _bad_elements(first, allowed)
    if bad:
        _skip(skipped, key, f"element(s) {' '.join(bad)} outside the allowed set")
        return None
    order, graph = _graph_key(first), _flat_smiles(first)
    mols, sources = [], []  # conformers in first's atom order; the records they came from
    for i, mol in members:
        source = mol
        if _graph_key(mol) != order:
            match = first.GetSubstructMatch(mol) if _flat_smiles(mol) == graph else ()
            if len(match) != first.GetNumAtoms():
                _skip(skipped, f"{key} (record {i + 1})", "graph differs from its group's")
                continue
            # match[k] = index in first of atom k of mol; renumber mol into first's order
            inverse = [0] * len(match)
            for k, j in enumerate(match):
                inverse[j] = k
            mol = Chem.RenumberAtoms(mol, inverse)  # (drops the SD properties)
        mols.append(mol)
        sources.append(source)
    if not mols:
        return None
    energies = None
    if energy_prop is not None:
        values = [_float_prop(m, energy_prop) for m in sources]
        if any(v is None for v in values):
            logger.warning(
                "%s: a conformer lacks a numeric %s; energies set to None", key, energy_prop
            )
        else:
            e = np.asarray(values) * unit_factor
            energies = e - e.min()
    if weight_prop is not None:
        w_or_none = [_float_prop(m, weight_prop) for m in sources]
        w = [v for v in w_or_none if v is not None and v >= 0]
        if len(w) < len(w_or_none) or sum(w) <= 0:
            _skip(skipped, key, f"missing or invalid weights in {weight_prop}")
            return None
        weights = np.asarray(w) / sum(w)
    elif energies is not None:
        weights = boltzmann_weights(energies, temperature)
    else:
        weights = np.full(len(mols), 1.0 / len(mols))
    return MolRecord(name=key, mol=_merge(mols, key), weights=weights, energies=energies)

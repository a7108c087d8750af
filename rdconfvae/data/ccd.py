"""Training set of experimental ligand conformations from the PDB Chemical Component Dictionary.

The wwPDB Chemical Component Dictionary (CCD) ships inside the ``biotite`` wheel as
``biotite/structure/info/components.bcif``. For every component it holds the bonded graph
(``chem_comp_atom``, ``chem_comp_bond``), the declared stereo (``pdbx_stereo_config``), computed
ideal coordinates (``pdbx_model_Cartn_*_ideal``) and *model* coordinates (``model_Cartn_*``) taken
from one PDB entry (``chem_comp.pdbx_model_coordinates_db_code``): an experimentally observed,
usually protein-bound, conformation. :func:`build_ccd_set` turns the components that pass every
filter of :data:`FILTERS` into RDKit molecules with the model coordinates as their one conformer
and writes them to a compact ``.npz`` file that :func:`load_ccd_set` reads back as
:class:`~rdconfvae.data.records.MolRecord` objects.

Benchmark molecules never enter: a component whose CCD code or InChIKey skeleton is on the
exclusion list (:mod:`rdconfvae.data.exclusions`) is dropped, and so is every later component with
the skeleton of one already kept, so no molecule appears twice.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import os
import platform
import sys
import time
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
from rdkit import Chem, rdBase
from rdkit.Chem import rdCIPLabeler, rdMolDescriptors
from rdkit.rdBase import BlockLogs

from rdconfvae.data.exclusions import Exclusions, inchikey_skeleton, load_exclusions
from rdconfvae.data.records import ALLOWED_ELEMENTS, MolRecord
from rdconfvae.errors import DataError
from rdconfvae.hashing import sha256_file

__all__ = [
    "CCD_FILE_NAME",
    "FILTERS",
    "FORMAT_VERSION",
    "CCDComponent",
    "CheckResult",
    "build_ccd_set",
    "check_component",
    "component_to_mol",
    "default_ccd_path",
    "iter_components",
    "load_ccd_set",
    "read_ccd",
    "split_of",
]

logger = logging.getLogger(__name__)

#: Name of the data file written into the output directory.
CCD_FILE_NAME = "ccd_set.npz"
#: Version of the ``.npz`` layout; :func:`load_ccd_set` refuses others.
FORMAT_VERSION = 1

#: Heavy-atom count range kept (inclusive).
MIN_HEAVY_ATOMS = 5
MAX_HEAVY_ATOMS = 70
#: A bond may differ from the same bond in the ideal coordinates by at most this (A).
BOND_TOLERANCE = 0.25
#: Minimum distance (A) between heavy atoms 3 bonds apart (1-4 pairs) ...
MIN_DIST_14 = 2.0
#: ... between heavy atoms 4 or more bonds apart ...
MIN_DIST_15 = 2.2
#: ... and between a hydrogen and any atom 2 or more bonds away.
MIN_DIST_H = 1.2
#: What each molecule's pickle keeps besides graph, stereo and conformer: its molecule-level
#: properties (``_Name``, ``ccd_model_entry``). Coordinates are pickled as float32, exact to
#: 1e-5 A for the CCD's three-decimal coordinates; AllProps would double the size (float64
#: coordinates and per-atom computed-property lists) for nothing.
_PICKLE_OPTIONS = Chem.PropertyPickleOptions.MolProps | Chem.PropertyPickleOptions.PrivateProps
#: Share of validation molecules, in percent, from the skeleton's sha256.
VAL_PERCENT = 5

# chem_comp.type values containing one of these words are polymer units (peptide, DNA, RNA
# linking residues and termini) or sugars; their model coordinates come from a polymer context.
_POLYMER_TYPE_WORDS = ("LINKING", "TERMINUS", "SACCHARIDE", "DNA", "RNA")

#: The filters, in the order they are applied, with the rule each enforces.
FILTERS: tuple[tuple[str, str], ...] = (
    ("released", "chem_comp.pdbx_release_status is REL"),
    (
        "type",
        "chem_comp.type is not a polymer unit, sugar or nucleotide (drops types containing "
        + ", ".join(_POLYMER_TYPE_WORDS)
        + "; keeps NON-POLYMER and PEPTIDE-LIKE)",
    ),
    ("elements", "every atom is one of " + " ".join(ALLOWED_ELEMENTS)),
    ("heavy_atoms", f"{MIN_HEAVY_ATOMS}..{MAX_HEAVY_ATOMS} heavy atoms"),
    ("one_fragment", "the bond graph is connected"),
    ("sanitises", "RDKit builds and sanitises it with the CCD's hydrogens, no radicals"),
    ("model_coordinates", "model_Cartn_x/y/z present for every atom and not all zero"),
    (
        "bond_lengths",
        f"every bond (heavy-atom and X-H) within {BOND_TOLERANCE} A of the same bond in the "
        "ideal coordinates (ideal coordinates required)",
    ),
    (
        "clash",
        f"heavy atoms 3 bonds apart >= {MIN_DIST_14} A, 4 or more bonds apart >= {MIN_DIST_15} A; "
        f"a hydrogen and any atom 2 or more bonds apart >= {MIN_DIST_H} A",
    ),
    (
        "stereo",
        "for every atom (R/S) and double bond (E/Z) with a declared pdbx_stereo_config, the "
        "CIP label RDKit gives the model coordinates equals the declared label, or, where "
        "RDKit labels the ideal coordinates differently from the declaration too, the label it "
        "gives the ideal coordinates",
    ),
    ("excluded", "CCD code and InChIKey skeleton not on the evaluation exclusion list"),
    ("duplicate", "first component (by code) with its InChIKey skeleton"),
)


@dataclass
class CCDComponent:
    """One chemical component as read from the CCD, before any RDKit processing.

    Shapes: N atoms, B bonds. Coordinates in Angstrom, NaN where the file has ``?``.
    """

    code: str
    type: str
    release_status: str
    model_entry: str
    atom_names: np.ndarray  # (N,) str
    elements: np.ndarray  # (N,) str, RDKit capitalisation ("Cl")
    charges: np.ndarray  # (N,) int
    model_xyz: np.ndarray  # (N, 3) float64
    ideal_xyz: np.ndarray  # (N, 3) float64
    atom_stereo: np.ndarray  # (N,) "R", "S" or "N"
    bonds: np.ndarray  # (B, 2) int64 atom indices, -1 for an unknown atom name
    bond_orders: np.ndarray  # (B,) "SING", "DOUB", "TRIP", "AROM", ...
    bond_aromatic: np.ndarray  # (B,) bool
    bond_stereo: np.ndarray  # (B,) "E", "Z" or "N"

    @property
    def num_atoms(self) -> int:
        return len(self.atom_names)


@dataclass
class CheckResult:
    """Outcome of :func:`check_component`: a molecule, or the first filter that failed."""

    mol: Chem.Mol | None
    reason: str | None = None  # name of the failed filter, None when kept
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.reason is None


# --------------------------------------------------------------------------------------------
# Reading the CCD


def default_ccd_path() -> Path:
    """``components.bcif`` inside the installed biotite package."""
    try:
        import biotite
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DataError(
            "building the CCD set needs biotite (pip install 'rdconfvae[data]')"
        ) from exc
    return Path(biotite.__file__).parent / "structure" / "info" / "components.bcif"


@dataclass
class _Tables:
    """Column arrays of the three CCD categories plus per-component row ranges."""

    comp: dict[str, np.ndarray]
    atom: dict[str, np.ndarray]
    bond: dict[str, np.ndarray]
    atom_range: dict[str, tuple[int, int]]
    bond_range: dict[str, tuple[int, int]]
    latest_date: str = ""

    def __repr__(self) -> str:
        return f"<CCD tables: {len(self.comp['id'])} components, latest date {self.latest_date}>"


def _column(category, name: str, path: Path, float_missing: bool = False) -> np.ndarray:
    try:
        col = category[name]
    except KeyError as exc:
        raise DataError(f"{path}: column {name!r} missing from the CCD file") from exc
    arr = col.as_array()
    if float_missing:
        arr = np.array(arr, dtype=np.float64)
        if col.mask is not None:
            arr[np.asarray(col.mask.array) != 0] = np.nan
    return arr


def _ranges(comp_ids: np.ndarray) -> dict[str, tuple[int, int]]:
    """Row range per component id; rows of one component must be contiguous."""
    if len(comp_ids) == 0:
        return {}
    starts = np.concatenate([[0], np.flatnonzero(comp_ids[1:] != comp_ids[:-1]) + 1])
    ends = np.concatenate([starts[1:], [len(comp_ids)]])
    out = {str(comp_ids[s]): (int(s), int(e)) for s, e in zip(starts, ends, strict=True)}
    if len(out) != len(starts):
        raise DataError("CCD rows of one component are not contiguous")
    return out


def read_ccd(path: str | Path | None = None) -> _Tables:
    """Read the columns the builder needs from a CCD BinaryCIF file (biotite imported here).

    Raises:
        DataError: the file cannot be read or lacks a needed category or column.
    """
    from biotite.structure.io import pdbx

    path = Path(path) if path is not None else default_ccd_path()
    try:
        bcif = pdbx.BinaryCIFFile.read(str(path))
        block = bcif.block
        cat_comp = block["chem_comp"]
        cat_atom = block["chem_comp_atom"]
        cat_bond = block["chem_comp_bond"]
    except KeyError as exc:
        raise DataError(f"{path}: not a CCD file, category {exc} missing") from exc
    except (OSError, ValueError, TypeError) as exc:
        raise DataError(f"{path}: cannot read BinaryCIF ({exc})") from exc
    comp = {
        k: _column(cat_comp, k, path)
        for k in (
            "id",
            "type",
            "pdbx_release_status",
            "pdbx_model_coordinates_db_code",
            "pdbx_modified_date",
        )
    }
    atom = {
        k: _column(cat_atom, k, path)
        for k in ("comp_id", "atom_id", "type_symbol", "charge", "pdbx_stereo_config")
    }
    for k in (
        "model_Cartn_x",
        "model_Cartn_y",
        "model_Cartn_z",
        "pdbx_model_Cartn_x_ideal",
        "pdbx_model_Cartn_y_ideal",
        "pdbx_model_Cartn_z_ideal",
    ):
        atom[k] = _column(cat_atom, k, path, float_missing=True)
    bond = {
        k: _column(cat_bond, k, path)
        for k in (
            "comp_id",
            "atom_id_1",
            "atom_id_2",
            "value_order",
            "pdbx_aromatic_flag",
            "pdbx_stereo_config",
        )
    }
    dates = [d for d in comp["pdbx_modified_date"].tolist() if d and d[0].isdigit()]
    return _Tables(
        comp=comp,
        atom=atom,
        bond=bond,
        atom_range=_ranges(atom["comp_id"]),
        bond_range=_ranges(bond["comp_id"]),
        latest_date=max(dates) if dates else "",
    )


def _element(symbol: str) -> str:
    symbol = symbol.strip()
    return symbol[:1].upper() + symbol[1:].lower()


def _component(tables: _Tables, row: int) -> CCDComponent:
    comp = tables.comp
    code = str(comp["id"][row])
    a0, a1 = tables.atom_range.get(code, (0, 0))
    b0, b1 = tables.bond_range.get(code, (0, 0))
    atom, bond = tables.atom, tables.bond
    names = atom["atom_id"][a0:a1]
    index = {str(n): i for i, n in enumerate(names)}
    if len(index) != len(names):
        index = {}  # duplicate atom names: leave every bond unresolved (rejected later)
    bonds = np.array(
        [
            [index.get(str(x), -1), index.get(str(y), -1)]
            for x, y in zip(bond["atom_id_1"][b0:b1], bond["atom_id_2"][b0:b1], strict=True)
        ],
        dtype=np.int64,
    ).reshape(-1, 2)
    return CCDComponent(
        code=code,
        type=str(comp["type"][row]),
        release_status=str(comp["pdbx_release_status"][row]),
        model_entry=str(comp["pdbx_model_coordinates_db_code"][row]),
        atom_names=names,
        elements=np.array([_element(s) for s in atom["type_symbol"][a0:a1]], dtype=object),
        charges=np.asarray(atom["charge"][a0:a1], dtype=np.int64),
        model_xyz=np.stack([atom[f"model_Cartn_{c}"][a0:a1] for c in "xyz"], axis=1).astype(
            np.float64
        ),
        ideal_xyz=np.stack(
            [atom[f"pdbx_model_Cartn_{c}_ideal"][a0:a1] for c in "xyz"], axis=1
        ).astype(np.float64),
        atom_stereo=atom["pdbx_stereo_config"][a0:a1],
        bonds=bonds,
        bond_orders=bond["value_order"][b0:b1],
        bond_aromatic=bond["pdbx_aromatic_flag"][b0:b1] == "Y",
        bond_stereo=bond["pdbx_stereo_config"][b0:b1],
    )


def iter_components(tables: _Tables, codes: Iterable[str] | None = None) -> Iterator[CCDComponent]:
    """Components in CCD code order (Python string order), or only those in ``codes``.

    Raises:
        DataError: a requested code is not in the CCD.
    """
    ids = [str(c) for c in tables.comp["id"]]
    row_of = {c: i for i, c in enumerate(ids)}
    if codes is None:
        wanted = sorted(row_of)
    else:
        wanted = sorted({c.strip().upper() for c in codes if c.strip()})
        missing = [c for c in wanted if c not in row_of]
        if missing:
            raise DataError(f"component(s) not in the CCD: {', '.join(missing)}")
    for code in wanted:
        yield _component(tables, row_of[code])


# --------------------------------------------------------------------------------------------
# One component -> one checked RDKit molecule

_BOND_TYPES = {
    "SING": Chem.BondType.SINGLE,
    "DOUB": Chem.BondType.DOUBLE,
    "TRIP": Chem.BondType.TRIPLE,
    "QUAD": Chem.BondType.QUADRUPLE,
    "AROM": Chem.BondType.AROMATIC,
}


def is_polymer_type(comp_type: str) -> bool:
    """True for ``chem_comp.type`` values of polymer units, sugars and nucleotides."""
    t = comp_type.upper()
    return any(word in t for word in _POLYMER_TYPE_WORDS)


def component_to_mol(comp: CCDComponent, coords: str = "model") -> Chem.RWMol:
    """Unsanitised RDKit molecule of ``comp`` with its hydrogens (no implicit H added).

    ``coords`` ``"model"`` or ``"ideal"`` attaches those coordinates as conformer 0 when every
    atom has them; ``"none"`` attaches none.

    Raises:
        ValueError: a bond names an unknown atom or has an unknown order.
    """
    mol = Chem.RWMol()
    for el, q in zip(comp.elements, comp.charges, strict=True):
        atom = Chem.Atom(str(el))
        atom.SetFormalCharge(int(q))
        atom.SetNoImplicit(True)
        mol.AddAtom(atom)
    # CCD orders are Kekule (SING/DOUB/TRIP); pdbx_aromatic_flag is informational, RDKit
    # perceives aromaticity when sanitising. AROM, if present, is kept as an aromatic bond.
    for (i, j), order in zip(comp.bonds, comp.bond_orders, strict=True):
        if i < 0 or j < 0 or i == j:
            raise ValueError(f"{comp.code}: bond references an unknown atom")
        bt = _BOND_TYPES.get(str(order))
        if bt is None:
            raise ValueError(f"{comp.code}: unknown bond order {order!r}")
        if mol.GetBondBetweenAtoms(int(i), int(j)) is not None:
            raise ValueError(
                f"{comp.code}: duplicate bond {comp.atom_names[i]}-{comp.atom_names[j]}"
            )
        mol.AddBond(int(i), int(j), bt)
        if bt == Chem.BondType.AROMATIC:
            b = mol.GetBondBetweenAtoms(int(i), int(j))
            b.SetIsAromatic(True)
            mol.GetAtomWithIdx(int(i)).SetIsAromatic(True)
            mol.GetAtomWithIdx(int(j)).SetIsAromatic(True)
    xyz = {"model": comp.model_xyz, "ideal": comp.ideal_xyz, "none": None}[coords]
    if xyz is not None and len(xyz) and np.isfinite(xyz).all():
        conf = Chem.Conformer(comp.num_atoms)
        conf.Set3D(True)
        for k, (x, y, z) in enumerate(xyz.tolist()):
            conf.SetAtomPosition(k, (x, y, z))
        mol.AddConformer(conf, assignId=True)
    return mol


def _bond_length_problem(comp: CCDComponent) -> str:
    if len(comp.bonds) == 0:
        return ""
    i, j = comp.bonds[:, 0], comp.bonds[:, 1]
    ideal = comp.ideal_xyz
    if not np.isfinite(ideal[i]).all() or not np.isfinite(ideal[j]).all():
        return "no ideal coordinates to compare bond lengths with"
    d_model = np.linalg.norm(comp.model_xyz[i] - comp.model_xyz[j], axis=1)
    d_ideal = np.linalg.norm(ideal[i] - ideal[j], axis=1)
    dev = np.abs(d_model - d_ideal)
    k = int(np.argmax(dev))
    if dev[k] > BOND_TOLERANCE:
        return (
            f"bond {comp.atom_names[i[k]]}-{comp.atom_names[j[k]]} {d_model[k]:.2f} A, "
            f"ideal {d_ideal[k]:.2f} A"
        )
    return ""


def _clash_problem(mol: Chem.Mol, comp: CCDComponent, heavy: np.ndarray) -> str:
    topo = Chem.GetDistanceMatrix(mol)  # bonds apart
    xyz = comp.model_xyz
    dist = np.linalg.norm(xyz[:, None, :] - xyz[None, :, :], axis=-1)
    hh = heavy[:, None] & heavy[None, :]
    bad = (hh & (topo == 3) & (dist < MIN_DIST_14)) | (hh & (topo >= 4) & (dist < MIN_DIST_15))
    bad |= ~hh & (topo >= 2) & (dist < MIN_DIST_H)
    if bad.any():
        a, b = np.argwhere(np.triu(bad))[0]
        return (
            f"{comp.atom_names[a]}-{comp.atom_names[b]} {dist[a, b]:.2f} A, "
            f"{int(topo[a, b])} bonds apart"
        )
    return ""


def _cip_labels(
    mol: Chem.Mol, atoms: Sequence[int], bonds: Sequence[int]
) -> tuple[list[str], list[str]]:
    """Assign stereo from conformer 0 of ``mol`` (in place) and return CIP labels.

    Returns upper-case labels (``""`` where RDKit sees no stereo element) for ``atoms`` and
    ``bonds`` (bond indices).
    """
    Chem.AssignStereochemistryFrom3D(mol, confId=-1, replaceExistingTags=True)
    rdCIPLabeler.AssignCIPLabels(
        mol, atomsToLabel=list(atoms), bondsToLabel=list(bonds), maxRecursiveIterations=2_000_000
    )
    atom_labels = [
        mol.GetAtomWithIdx(i).GetProp("_CIPCode").upper()
        if mol.GetAtomWithIdx(i).HasProp("_CIPCode")
        else ""
        for i in atoms
    ]
    bond_labels = [
        mol.GetBondWithIdx(k).GetProp("_CIPCode")
        if mol.GetBondWithIdx(k).HasProp("_CIPCode")
        else ""
        for k in bonds
    ]
    return atom_labels, bond_labels


def _with_coords(mol: Chem.Mol, xyz: np.ndarray) -> Chem.Mol:
    out = Chem.Mol(mol)
    out.RemoveAllConformers()
    conf = Chem.Conformer(out.GetNumAtoms())
    conf.Set3D(True)
    for k, (x, y, z) in enumerate(xyz.tolist()):
        conf.SetAtomPosition(k, (x, y, z))
    out.AddConformer(conf, assignId=True)
    return out


def _stereo_problem(mol: Chem.Mol, comp: CCDComponent) -> str:
    """Compare the declared R/S and E/Z with the CIP labels the model coordinates give.

    ``mol`` must be sanitised with the model conformer attached; its chiral tags and bond
    stereo are (re)assigned from 3D in place. A declared element whose model label differs is
    accepted only where RDKit gives the ideal coordinates (built by the CCD from the declared
    stereo) that same label and it too differs from the declaration: then the two CIP
    implementations disagree, not the geometry.
    """
    atoms = [i for i, s in enumerate(comp.atom_stereo) if s in ("R", "S")]
    bond_idx, bond_names, bond_want = [], [], []
    for k, s in enumerate(comp.bond_stereo):
        if s in ("E", "Z"):
            i, j = (int(x) for x in comp.bonds[k])
            bond_idx.append(mol.GetBondBetweenAtoms(i, j).GetIdx())
            bond_names.append(f"{comp.atom_names[i]}={comp.atom_names[j]}")
            bond_want.append(str(s))
    names = [f"atom {comp.atom_names[i]}" for i in atoms] + [f"bond {n}" for n in bond_names]
    want = [str(comp.atom_stereo[i]) for i in atoms] + bond_want
    try:
        got_a, got_b = _cip_labels(mol, atoms, bond_idx)
    except RuntimeError as exc:  # MaxIterationsExceeded
        return f"CIP labelling failed ({exc})"
    got = got_a + got_b
    bad = [k for k in range(len(want)) if got[k] != want[k]]
    if not bad:
        return ""
    ideal: list[str] | None = None
    if np.isfinite(comp.ideal_xyz).all():
        try:
            ia, ib = _cip_labels(_with_coords(mol, comp.ideal_xyz), atoms, bond_idx)
            ideal = ia + ib
        except RuntimeError:
            ideal = None
    for k in bad:
        if ideal is not None and ideal[k] != want[k] and ideal[k] == got[k]:
            continue
        return f"{names[k]} declared {want[k]}, model coordinates give {got[k] or '-'}"
    return ""


def check_component(comp: CCDComponent) -> CheckResult:
    """Build ``comp`` with its model coordinates and apply the per-component filters.

    Applies, in order, the filters of :data:`FILTERS` up to ``stereo`` (exclusions and
    de-duplication need the whole set and happen in :func:`build_ccd_set`). On success the
    molecule is sanitised, keeps the CCD's explicit hydrogens, carries the model coordinates as
    conformer 0, chiral tags and double-bond stereo assigned from those coordinates, ``_Name``
    set to the CCD code and ``ccd_model_entry`` to the PDB entry the coordinates come from.
    """
    if comp.release_status != "REL":
        return CheckResult(None, "released", comp.release_status)
    if is_polymer_type(comp.type):
        return CheckResult(None, "type", comp.type)
    bad = sorted({str(e) for e in comp.elements} - set(ALLOWED_ELEMENTS))
    if bad or comp.num_atoms == 0:
        return CheckResult(None, "elements", " ".join(bad) or "no atoms")
    heavy = np.array([e != "H" for e in comp.elements], dtype=bool)
    n_heavy = int(heavy.sum())
    if not MIN_HEAVY_ATOMS <= n_heavy <= MAX_HEAVY_ATOMS:
        return CheckResult(None, "heavy_atoms", str(n_heavy))
    try:
        rw = component_to_mol(comp, coords="none")
    except ValueError as exc:
        return CheckResult(None, "sanitises", str(exc))
    n_frag = len(Chem.GetMolFrags(rw, sanitizeFrags=False))
    if n_frag != 1:
        return CheckResult(None, "one_fragment", f"{n_frag} fragments")
    mol = rw.GetMol()
    with BlockLogs():
        try:
            Chem.SanitizeMol(mol)
        except (Chem.rdchem.MolSanitizeException, RuntimeError, ValueError) as exc:
            return CheckResult(None, "sanitises", str(exc).splitlines()[0] if str(exc) else "")
    radicals = [a.GetIdx() for a in mol.GetAtoms() if a.GetNumRadicalElectrons()]
    if radicals:
        return CheckResult(None, "sanitises", f"radical at {comp.atom_names[radicals[0]]}")
    xyz = comp.model_xyz
    if not np.isfinite(xyz).all():
        return CheckResult(None, "model_coordinates", "missing")
    if not np.any(xyz):
        return CheckResult(None, "model_coordinates", "all zero")
    problem = _bond_length_problem(comp)
    if problem:
        return CheckResult(None, "bond_lengths", problem)
    problem = _clash_problem(mol, comp, heavy)
    if problem:
        return CheckResult(None, "clash", problem)
    conf = Chem.Conformer(comp.num_atoms)
    conf.Set3D(True)
    for k, (x, y, z) in enumerate(xyz.tolist()):
        conf.SetAtomPosition(k, (x, y, z))
    mol.AddConformer(conf, assignId=True)
    with BlockLogs():
        problem = _stereo_problem(mol, comp)
    if problem:
        return CheckResult(None, "stereo", problem)
    _clean_props(mol)
    mol.SetProp("_Name", comp.code)
    if comp.model_entry and comp.model_entry not in ("?", "."):
        mol.SetProp("ccd_model_entry", comp.model_entry)
    return CheckResult(mol)


def _clean_props(mol: Chem.Mol) -> None:
    """Drop computed and CIP properties so the stored pickle holds only what we mean to keep."""
    mol.ClearComputedProps(includeRings=False)
    for a in mol.GetAtoms():
        for p in ("_CIPCode", "_ChiralityPossible", "_CIPRank"):
            if a.HasProp(p):
                a.ClearProp(p)
    for b in mol.GetBonds():
        if b.HasProp("_CIPCode"):
            b.ClearProp("_CIPCode")
    for p in ("_StereochemDone", "_CIPComputed"):
        if mol.HasProp(p):
            mol.ClearProp(p)


# --------------------------------------------------------------------------------------------
# Split, writing and reading the set


def split_of(skeleton: str) -> str:
    """Fixed split by InChIKey skeleton: ``"val"`` for about 5 % of skeletons, else ``"train"``.

    >>> split_of("BSYNRYMUTXBXSQ")  # aspirin
    'train'
    """
    h = int(hashlib.sha256(skeleton.encode("ascii")).hexdigest(), 16)
    return "val" if h % 100 < VAL_PERCENT else "train"


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    arr = np.asarray(arr)  # (np.ascontiguousarray would turn a 0-d array into 1-d)
    np.lib.format.write_array(
        buf, arr if arr.flags.c_contiguous else arr.copy(), allow_pickle=False
    )
    return buf.getvalue()


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write an ``.npz`` np.load can read, byte-identical for identical arrays.

    numpy's ``savez`` stamps the current time into every zip entry; here every entry gets the
    same fixed timestamp and permissions, and entries are stored uncompressed (the blobs are
    small pickles, and stored entries load without a decompression pass).
    """
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            info.create_system = 3
            zf.writestr(info, _npy_bytes(arr))
    os.replace(tmp, path)


def _sdf_record(mol: Chem.Mol, split: str) -> str:
    block = Chem.MolToMolBlock(mol)
    props = []
    if mol.HasProp("ccd_model_entry"):
        props.append(("ccd_model_entry", mol.GetProp("ccd_model_entry")))
    props.append(("split", split))
    return block + "".join(f">  <{k}>\n{v}\n\n" for k, v in props) + "$$$$\n"


def _write_sdf(path: Path, records: Sequence[tuple[Chem.Mol, str]]) -> None:
    """One record per molecule, named by its CCD code; gzip (fixed header) for ``.gz``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as raw:
        stream: gzip.GzipFile | IO[bytes]
        if path.suffix == ".gz":
            stream = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0)
        else:
            stream = raw
        try:
            for mol, split in records:
                stream.write(_sdf_record(mol, split).encode("utf-8"))
        finally:
            if stream is not raw:
                stream.close()
    os.replace(tmp, path)


def build_ccd_set(
    out_dir: str | Path,
    *,
    sdf: str | Path | None = None,
    limit: int | None = None,
    codes: Iterable[str] | None = None,
    ccd_path: str | Path | None = None,
    exclusions: Exclusions | str | Path | None = None,
    progress: bool | None = None,
) -> dict:
    """Build the CCD training set into ``out_dir``; return the manifest (also written).

    Writes ``out_dir/ccd_set.npz`` (see :func:`load_ccd_set`), ``out_dir/manifest.json``
    (sources and their sha256, counts per filter, output sha256, wall time, medians) and
    ``out_dir/rejected.tsv`` (code, filter, detail of every component dropped). Same inputs give
    the same ``ccd_set.npz``, ``rejected.tsv`` and SDF bytes.

    Args:
        out_dir: output directory, created if needed.
        sdf: also write the set as SDF here (gzip-compressed if the name ends in ``.gz``).
        limit: only the first ``limit`` components (in code order) of the selection.
        codes: only these CCD codes.
        ccd_path: a CCD BinaryCIF file; default the one inside the installed biotite.
        exclusions: an exclusion list or its path; default the packaged list.
        progress: show a progress bar; None shows one when stderr is a terminal.

    Raises:
        DataError: the CCD or exclusion file is malformed, or a code in ``codes`` is unknown.
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if exclusions is None or isinstance(exclusions, (str, Path)):
        exclusions = load_exclusions(exclusions)
    ccd_path = Path(ccd_path) if ccd_path is not None else default_ccd_path()
    if not ccd_path.is_file():
        raise DataError(f"CCD file not found: {ccd_path}")
    if limit is not None and limit < 0:
        raise ValueError("limit must be >= 0")
    code_list = None if codes is None else [c for c in codes if c.strip()]

    logger.info("reading %s", ccd_path)
    tables = read_ccd(ccd_path)
    n_components = len(tables.comp["id"])
    selected = list(iter_components(tables, code_list))
    if limit is not None:
        selected = selected[:limit]

    dropped = {name: 0 for name, _ in FILTERS}
    rejected: list[tuple[str, str, str]] = []
    kept: list[tuple[str, Chem.Mol, str]] = []  # code, mol, skeleton
    first_of: dict[str, str] = {}
    bar = tqdm(
        selected,
        desc="CCD components",
        unit="comp",
        disable=(not sys.stderr.isatty()) if progress is None else not progress,
        dynamic_ncols=True,
    )
    with BlockLogs():
        for comp in bar:
            res = check_component(comp)
            mol = res.mol
            if res.ok and mol is not None:
                skeleton = inchikey_skeleton(mol)
                if not skeleton:
                    res = CheckResult(None, "excluded", "no InChIKey: cannot be checked")
                elif comp.code.upper() in exclusions.ccd_codes:
                    res = CheckResult(None, "excluded", "CCD code on the exclusion list")
                elif skeleton in exclusions.skeletons:
                    res = CheckResult(
                        None, "excluded", f"skeleton {skeleton} on the exclusion list"
                    )
                elif skeleton in first_of:
                    res = CheckResult(None, "duplicate", f"same skeleton as {first_of[skeleton]}")
                else:
                    first_of[skeleton] = comp.code
                    kept.append((comp.code, mol, skeleton))
                    continue
            reason = str(res.reason)  # a failed check always names its filter
            dropped[reason] += 1
            rejected.append((comp.code, reason, res.detail.replace("\t", " ").replace("\n", " ")))
    bar.close()

    names = [c for c, _, _ in kept]
    skeletons = [s for _, _, s in kept]
    splits = [split_of(s) for s in skeletons]
    blobs = [m.ToBinary(_PICKLE_OPTIONS) for _, m, _ in kept]
    offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(b) for b in blobs])
    arrays = {
        "format_version": np.array(FORMAT_VERSION, dtype=np.int64),
        "codes": np.array(names, dtype=f"<U{max([len(c) for c in names], default=1)}"),
        "skeletons": np.array(skeletons, dtype="<U14"),
        "splits": np.array(splits, dtype="<U5"),
        "offsets": offsets,
        "blobs": np.frombuffer(b"".join(blobs), dtype=np.uint8),
    }
    npz_path = out_dir / CCD_FILE_NAME
    _write_npz(npz_path, arrays)
    with open(out_dir / "rejected.tsv", "w", encoding="utf-8", newline="\n") as fh:
        fh.write("code\tfilter\tdetail\n")
        fh.writelines(f"{c}\t{r}\t{d}\n" for c, r, d in rejected)
    sdf_info = None
    if sdf is not None:
        sdf = Path(sdf)
        _write_sdf(sdf, [(m, sp) for (_, m, _), sp in zip(kept, splits, strict=True)])
        sdf_info = {"file": str(sdf), "sha256": sha256_file(sdf), "bytes": sdf.stat().st_size}

    heavy = [m.GetNumHeavyAtoms() for _, m, _ in kept]
    rot = [rdMolDescriptors.CalcNumRotatableBonds(Chem.RemoveHs(m)) for _, m, _ in kept]
    remaining = len(selected)
    filters = []
    for name, rule in FILTERS:
        remaining -= dropped[name]
        filters.append(
            {"name": name, "rule": rule, "dropped": dropped[name], "remaining": remaining}
        )
    manifest = {
        "format": "rdconfvae-ccd-set",
        "format_version": FORMAT_VERSION,
        "output": {
            "file": CCD_FILE_NAME,
            "sha256": sha256_file(npz_path),
            "bytes": npz_path.stat().st_size,
            "molecules": len(kept),
            "train": splits.count("train"),
            "val": splits.count("val"),
        },
        "source": {
            "ccd_file": str(ccd_path),
            "ccd_sha256": sha256_file(ccd_path),
            "ccd_bytes": ccd_path.stat().st_size,
            "ccd_date": tables.latest_date,
            "ccd_date_note": "latest chem_comp.pdbx_modified_date in the file (it carries no "
            "release date)",
            "ccd_components": n_components,
            "biotite_version": _version("biotite"),
        },
        "exclusions": {
            "file": exclusions.source,
            "sha256": exclusions.sha256,
            "rows": exclusions.n_rows,
            "skeletons": len(exclusions.skeletons),
            "ccd_codes": len(exclusions.ccd_codes),
        },
        "selection": {"codes": code_list, "limit": limit, "components": len(selected)},
        "filters": filters,
        "split": {"rule": f"val if int(sha256(skeleton), 16) % 100 < {VAL_PERCENT}"},
        "stats": {
            "median_heavy_atoms": float(np.median(heavy)) if heavy else None,
            "median_rotatable_bonds": float(np.median(rot)) if rot else None,
            "rotatable_bonds_definition": "RDKit CalcNumRotatableBonds (strict) without H",
        },
        "sdf": sdf_info,
        "software": {
            "rdkit": rdBase.rdkitVersion,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "wall_time_s": round(time.perf_counter() - t0, 1),
    }
    with open(out_dir / "manifest.json", "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, indent=2)
        fh.write("\n")
    logger.info("kept %d of %d components in %s", len(kept), len(selected), npz_path)
    return manifest


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


_REQUIRED = ("format_version", "codes", "splits", "offsets", "blobs")


def load_ccd_set(path: str | Path, split: str | None = None) -> list[MolRecord]:
    """Load a set written by :func:`build_ccd_set`.

    Args:
        path: the output directory or the ``ccd_set.npz`` file itself.
        split: ``"train"`` or ``"val"`` for one split; None for all molecules.

    Returns:
        One :class:`MolRecord` per molecule in CCD code order: ``name`` the CCD code, ``mol``
        with explicit H and the model coordinates as its only conformer, ``weights`` ``[1.0]``,
        ``energies`` None.

    Raises:
        DataError: the file is missing, not a CCD set, or corrupted.
    """
    if split not in (None, "train", "val"):
        raise ValueError(f"split must be 'train', 'val' or None, got {split!r}")
    p = Path(path)
    if p.is_dir():
        p = p / CCD_FILE_NAME
    if not p.is_file():
        raise DataError(f"CCD set not found: {p}")
    try:
        with np.load(p, allow_pickle=False) as z:
            missing = [k for k in _REQUIRED if k not in z.files]
            if missing:
                raise DataError(f"{p}: not a CCD set, missing {', '.join(missing)}")
            fv = z["format_version"]
            version = int(fv.reshape(-1)[0]) if fv.size == 1 else -1
            if version != FORMAT_VERSION:
                raise DataError(
                    f"{p}: format version {version}, this rdconfvae reads {FORMAT_VERSION}; "
                    "rebuild with python -m rdconfvae.data ccd"
                )
            codes, splits = z["codes"], z["splits"]
            offsets, blobs = z["offsets"], z["blobs"]
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{p}: cannot read CCD set ({exc})") from exc
    n = len(codes)
    if (
        len(splits) != n
        or offsets.shape != (n + 1,)
        or blobs.dtype != np.uint8
        or (n and (offsets[0] != 0 or offsets[-1] != len(blobs) or np.any(np.diff(offsets) <= 0)))
    ):
        raise DataError(f"{p}: inconsistent array lengths or offsets (corrupted file)")
    weights = np.ones(1, dtype=np.float64)
    records = []
    raw = blobs.tobytes()
    for i in range(n):
        sp = str(splits[i])
        if split is not None and sp != split:
            continue
        try:
            mol = Chem.Mol(raw[offsets[i] : offsets[i + 1]])
        except RuntimeError as exc:
            raise DataError(f"{p}: molecule {codes[i]} cannot be unpickled ({exc})") from exc
        if mol.GetNumConformers() < 1:
            raise DataError(f"{p}: molecule {codes[i]} has no conformer")
        records.append(MolRecord(name=str(codes[i]), mol=mol, weights=weights.copy(), split=sp))
    return records

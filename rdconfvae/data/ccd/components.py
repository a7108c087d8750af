"""Reading the CCD (biotite's ``components.bcif``) into components, and a component into RDKit."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rdkit import Chem

from rdconfvae.errors import DataError


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
class CCDTables:
    """Column arrays of the three CCD categories plus per-component row ranges."""

    comp: dict[str, np.ndarray]
    atom: dict[str, np.ndarray]
    bond: dict[str, np.ndarray]
    atom_range: dict[str, tuple[int, int]]
    bond_range: dict[str, tuple[int, int]]
    latest_date: str = ""

    def __repr__(self) -> str:
        return f"<CCD tables: {len(self.comp['id'])} components, latest date {self.latest_date}>"


def _column(category: Any, name: str, path: Path, float_missing: bool = False) -> np.ndarray:
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


def read_ccd(path: str | Path | None = None) -> CCDTables:
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
    return CCDTables(
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


def _component(tables: CCDTables, row: int) -> CCDComponent:
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


def iter_components(
    tables: CCDTables, codes: Iterable[str] | None = None
) -> Iterator[CCDComponent]:
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


_BOND_TYPES = {
    "SING": Chem.BondType.SINGLE,
    "DOUB": Chem.BondType.DOUBLE,
    "TRIP": Chem.BondType.TRIPLE,
    "QUAD": Chem.BondType.QUADRUPLE,
    "AROM": Chem.BondType.AROMATIC,
}


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

"""The filters a component must pass to enter the set, in order (:data:`FILTERS`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from rdkit import Chem
from rdkit.Chem import rdCIPLabeler
from rdkit.rdBase import BlockLogs

from rdconfvae.data.ccd.components import CCDComponent, component_to_mol
from rdconfvae.data.records import ALLOWED_ELEMENTS

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
class CheckResult:
    """Outcome of :func:`check_component`: a molecule, or the first filter that failed."""

    mol: Chem.Mol | None
    reason: str | None = None  # name of the failed filter, None when kept
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.reason is None


def is_polymer_type(comp_type: str) -> bool:
    """True for ``chem_comp.type`` values of polymer units, sugars and nucleotides."""
    t = comp_type.upper()
    return any(word in t for word in _POLYMER_TYPE_WORDS)


def bond_length_problem(comp: CCDComponent) -> str:
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


def clash_problem(mol: Chem.Mol, comp: CCDComponent, heavy: np.ndarray) -> str:
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


def with_coords(mol: Chem.Mol, xyz: np.ndarray) -> Chem.Mol:
    out = Chem.Mol(mol)
    out.RemoveAllConformers()
    conf = Chem.Conformer(out.GetNumAtoms())
    conf.Set3D(True)
    for k, (x, y, z) in enumerate(xyz.tolist()):
        conf.SetAtomPosition(k, (x, y, z))
    out.AddConformer(conf, assignId=True)
    return out


def stereo_problem(mol: Chem.Mol, comp: CCDComponent) -> str:
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
            ia, ib = _cip_labels(with_coords(mol, comp.ideal_xyz), atoms, bond_idx)
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
    problem = bond_length_problem(comp)
    if problem:
        return CheckResult(None, "bond_lengths", problem)
    problem = clash_problem(mol, comp, heavy)
    if problem:
        return CheckResult(None, "clash", problem)
    conf = Chem.Conformer(comp.num_atoms)
    conf.Set3D(True)
    for k, (x, y, z) in enumerate(xyz.tolist()):
        conf.SetAtomPosition(k, (x, y, z))
    mol.AddConformer(conf, assignId=True)
    with BlockLogs():
        problem = stereo_problem(mol, comp)
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

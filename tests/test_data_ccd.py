"""The CCD training set: filters on real components, exclusions, determinism, round trip.

Components used (all from the CCD shipped with biotite 1.6.0):
AIN aspirin, RIT ritonavir (4 declared R/S centres), 13R (declared R, E and Z) -- kept;
STI imatinib (Platinum ligand, excluded by CCD code); 0LW (excluded by skeleton: same
InChIKey skeleton as the Platinum ligand 0LU); 00Q (bond C17-CY 1.88 A in the model, 1.51 A
ideal); 02E (heavy atoms 5 bonds apart at 2.08 A); HEM (iron); ALA (L-peptide linking).
"""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import rdCIPLabeler

pytest.importorskip("biotite")

from rdconfvae.data import (  # noqa: E402
    ALLOWED_ELEMENTS,
    MolRecord,
    build_ccd_set,
    ccd,  # noqa: E402
    is_excluded,
    load_ccd_set,
    load_exclusions,
)
from rdconfvae.data.__main__ import main  # noqa: E402
from rdconfvae.data.ccd import filters as ccd_filters  # noqa: E402
from rdconfvae.data.ccd import store as ccd_store  # noqa: E402
from rdconfvae.data.exclusions import inchikey_skeleton  # noqa: E402
from rdconfvae.errors import DataError  # noqa: E402

KEPT = ["13R", "AIN", "RIT"]
EXPECTED_REASON = {
    "STI": "excluded",
    "0LW": "excluded",
    "00Q": "bond_lengths",
    "02E": "clash",
    "HEM": "elements",
    "ALA": "type",
}
CODES = KEPT + list(EXPECTED_REASON)
SHARED_TSV = (
    Path(__file__).resolve().parents[1] / ".." / "shared/data/exclusions/eval_exclusions.tsv"
)


@pytest.fixture(scope="module")
def tables():
    return ccd.read_ccd()


@pytest.fixture
def cached_ccd(monkeypatch, tables):
    """Builds reuse the module's parsed CCD instead of reading the 63 MB file each time."""
    monkeypatch.setattr(ccd_store, "read_ccd", lambda path=None: tables)


@pytest.fixture(scope="module")
def built(tmp_path_factory, tables):
    out = tmp_path_factory.mktemp("ccd")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ccd_store, "read_ccd", lambda path=None: tables)
        manifest = build_ccd_set(out, codes=CODES, sdf=out / "set.sdf.gz", progress=False)
    return out, manifest


def component(tables, code):
    (comp,) = ccd.iter_components(tables, [code])
    return comp


def rejected(out: Path) -> dict[str, tuple[str, str]]:
    lines = (out / "rejected.tsv").read_text().splitlines()
    assert lines[0] == "code\tfilter\tdetail"
    return {c: (f, d) for c, f, d in (line.split("\t") for line in lines[1:])}


def test_allowed_elements_is_the_model_vocabulary():
    """The CCD filter keeps exactly the featurizer's heavy elements plus hydrogen."""
    from rdconfvae.model import featurize

    assert ALLOWED_ELEMENTS == ("H", *featurize.ELEMENTS)


def test_kept_and_rejected_components(built):
    out, manifest = built
    records = load_ccd_set(out)
    assert [r.name for r in records] == KEPT
    reasons = rejected(out)
    assert {c: f for c, (f, _) in reasons.items()} == EXPECTED_REASON
    assert reasons["STI"][1] == "CCD code on the exclusion list"
    assert reasons["0LW"][1].startswith("skeleton ")
    counts = {f["name"]: f["dropped"] for f in manifest["filters"]}
    assert [f["name"] for f in manifest["filters"]] == [name for name, _ in ccd.FILTERS]
    assert counts["excluded"] == 2 and counts["bond_lengths"] == 1 and counts["clash"] == 1
    assert manifest["filters"][-1]["remaining"] == manifest["output"]["molecules"] == len(KEPT)
    assert manifest["selection"]["components"] == len(CODES)
    assert manifest["output"]["train"] + manifest["output"]["val"] == len(KEPT)
    assert len(manifest["source"]["ccd_sha256"]) == 64
    assert manifest["exclusions"]["sha256"] == load_exclusions().sha256


def test_kept_molecule_is_the_ccd_model_conformation(built, tables):
    out, _ = built
    rec = {r.name: r for r in load_ccd_set(out)}["AIN"]
    comp = component(tables, "AIN")
    mol = rec.mol
    # aspirin, with the CCD's explicit hydrogens in the CCD's atom order
    assert Chem.MolToSmiles(Chem.RemoveHs(mol)) == Chem.MolToSmiles(
        Chem.MolFromSmiles("CC(=O)Oc1ccccc1C(=O)O")
    )
    assert mol.GetNumAtoms() == comp.num_atoms == 21
    assert [a.GetSymbol() for a in mol.GetAtoms()] == list(comp.elements)
    assert mol.GetProp("_Name") == "AIN"
    assert mol.GetProp("ccd_model_entry") == comp.model_entry
    xyz = mol.GetConformer().GetPositions()
    np.testing.assert_allclose(xyz, comp.model_xyz, atol=1e-4)  # model, not ideal
    assert not np.allclose(xyz, comp.ideal_xyz, atol=0.5)
    # chemistry of the stored conformer: every bond within 0.25 A of the ideal geometry
    ideal = comp.ideal_xyz
    for bond in mol.GetBonds():
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        d = np.linalg.norm(xyz[i] - xyz[j])
        assert abs(d - np.linalg.norm(ideal[i] - ideal[j])) <= ccd.BOND_TOLERANCE
        if bond.GetBondType() == Chem.BondType.DOUBLE:  # carbonyl C=O
            assert 1.1 < d < 1.35
    assert rec.weights.tolist() == [1.0] and rec.energies is None


@pytest.mark.parametrize("code", ["RIT", "13R"])
def test_kept_stereo_equals_declared(built, tables, code):
    out, _ = built
    mol = Chem.Mol({r.name: r for r in load_ccd_set(out)}[code].mol)
    comp = component(tables, code)
    # The stored chiral tags and bond stereo are those of the coordinates ...
    smiles_stored = Chem.MolToSmiles(mol)
    from3d = Chem.Mol(mol)
    Chem.AssignStereochemistryFrom3D(from3d, replaceExistingTags=True)
    assert Chem.MolToSmiles(from3d) == smiles_stored
    # ... and those are the declared ones.
    rdCIPLabeler.AssignCIPLabels(from3d)
    declared_atoms = {i: s for i, s in enumerate(comp.atom_stereo) if s in ("R", "S")}
    assert declared_atoms
    for i, s in declared_atoms.items():
        assert from3d.GetAtomWithIdx(i).GetProp("_CIPCode") == s
    for (i, j), s in zip(comp.bonds, comp.bond_stereo, strict=True):
        if s in ("E", "Z"):
            assert from3d.GetBondBetweenAtoms(int(i), int(j)).GetProp("_CIPCode") == s
    assert code != "13R" or {"E", "Z"} <= set(comp.bond_stereo)


def test_mirror_image_fails_stereo_check(tables):
    comp = component(tables, "RIT")
    assert ccd.check_component(comp).ok
    comp.model_xyz = comp.model_xyz * np.array([-1.0, 1.0, 1.0])  # same geometry, mirrored
    res = ccd.check_component(comp)
    assert res.reason == "stereo" and "declared" in res.detail


def _rotate_side(xyz, mol, i, j, angle):
    """Rotate the atoms on j's side of bond i-j (acyclic) by ``angle`` about the bond axis."""
    side, todo = {j}, [j]
    while todo:
        for n in mol.GetAtomWithIdx(todo.pop()).GetNeighbors():
            k = n.GetIdx()
            if k != i and k not in side:
                side.add(k)
                todo.append(k)
    assert i not in side
    axis = (xyz[j] - xyz[i]) / np.linalg.norm(xyz[j] - xyz[i])
    c, s = np.cos(angle), np.sin(angle)
    kx = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rot = np.eye(3) + s * kx + (1 - c) * kx @ kx  # Rodrigues
    out = xyz.copy()
    idx = sorted(side)
    out[idx] = (xyz[idx] - xyz[j]) @ rot.T + xyz[j]
    return out


def test_flipped_double_bond_fails_stereo_check(tables):
    comp = component(tables, "13R")
    mol = ccd.component_to_mol(comp, coords="none")
    Chem.SanitizeMol(mol)
    (k, *_) = [k for k, s in enumerate(comp.bond_stereo) if s in ("E", "Z")]
    i, j = (int(x) for x in comp.bonds[k])
    assert not mol.GetBondBetweenAtoms(i, j).IsInRing()
    # a 180 degree turn about the double bond: E <-> Z, every bond length unchanged
    flipped = _rotate_side(comp.model_xyz, mol, i, j, np.pi)
    with_coords = ccd_filters.with_coords(mol, flipped)
    problem = ccd_filters.stereo_problem(with_coords, comp)
    assert f"declared {comp.bond_stereo[k]}" in problem
    comp.model_xyz = flipped
    assert not ccd.check_component(comp).ok
    # a full turn changes nothing
    assert (
        ccd_filters.stereo_problem(
            ccd_filters.with_coords(mol, _rotate_side(flipped, mol, i, j, np.pi)), comp
        )
        == ""
    )


def test_perturbed_coordinates_are_rejected(tables):
    comp = component(tables, "AIN")
    assert ccd.check_component(comp).ok
    heavy = [k for k, e in enumerate(comp.elements) if e != "H"]
    stretched = component(tables, "AIN")
    stretched.model_xyz = stretched.model_xyz.copy()
    stretched.model_xyz[heavy[0]] += np.array([0.6, 0.0, 0.0])
    res = ccd.check_component(stretched)
    assert res.reason == "bond_lengths", res
    # two heavy atoms 3+ bonds apart put on top of each other (bonds unchanged is impossible,
    # so test the clash rule itself on the real component's graph)
    mol = ccd.component_to_mol(comp, coords="none")
    Chem.SanitizeMol(mol)
    topo = Chem.GetDistanceMatrix(mol)
    is_heavy = np.array([e != "H" for e in comp.elements])
    a, b = np.argwhere((topo >= 4) & is_heavy[:, None] & is_heavy[None, :])[0]
    crowded = component(tables, "AIN")
    crowded.model_xyz = crowded.model_xyz.copy()
    crowded.model_xyz[b] = crowded.model_xyz[a] + np.array([1.5, 0.0, 0.0])
    assert "bonds apart" in ccd_filters.clash_problem(mol, crowded, is_heavy)
    assert ccd_filters.clash_problem(mol, comp, is_heavy) == ""
    missing = component(tables, "AIN")
    missing.model_xyz = missing.model_xyz.copy()
    missing.model_xyz[3] = np.nan
    assert ccd.check_component(missing).reason == "model_coordinates"
    zero = component(tables, "AIN")
    zero.model_xyz = np.zeros_like(zero.model_xyz)
    assert ccd.check_component(zero).reason == "model_coordinates"


def test_disconnected_component_is_rejected(tables):
    comp = component(tables, "AIN")
    mol = ccd.component_to_mol(comp, coords="none")
    Chem.SanitizeMol(mol)
    # cut the ester C-O bond (acyclic, between two heavy atoms): two fragments
    (k,) = [
        b.GetIdx()
        for b in mol.GetBonds()
        if not b.IsInRing()
        and {b.GetBeginAtom().GetSymbol(), b.GetEndAtom().GetSymbol()} == {"C", "O"}
        and b.GetBondType() == Chem.BondType.SINGLE
        and b.GetBeginAtom().GetDegree() > 1
        and b.GetEndAtom().GetDegree() > 1
        and any(n.GetIsAromatic() for n in (b.GetBeginAtom(), b.GetEndAtom()))
    ]
    keep = np.ones(len(comp.bonds), dtype=bool)
    keep[k] = False  # RDKit bond k is CCD bond k: bonds are added in file order
    comp.bonds, comp.bond_orders = comp.bonds[keep], comp.bond_orders[keep]
    comp.bond_aromatic, comp.bond_stereo = comp.bond_aromatic[keep], comp.bond_stereo[keep]
    res = ccd.check_component(comp)
    assert res.reason == "one_fragment" and res.detail == "2 fragments"


def test_real_bad_geometry_component(tables):
    res = ccd.check_component(component(tables, "00Q"))
    assert res.reason == "bond_lengths" and "C17-CY" in res.detail
    assert ccd.check_component(component(tables, "02E")).reason == "clash"


def test_build_is_deterministic(built, tmp_path, cached_ccd):
    out, manifest = built
    again = build_ccd_set(tmp_path, codes=CODES, sdf=tmp_path / "set.sdf.gz", progress=False)
    for name in ("ccd_set.npz", "rejected.tsv", "set.sdf.gz"):
        assert (tmp_path / name).read_bytes() == (out / name).read_bytes(), name
    assert again["output"]["sha256"] == manifest["output"]["sha256"]


def test_load_round_trip(built):
    out, _ = built
    by_dir = load_ccd_set(out)
    by_file = load_ccd_set(out / "ccd_set.npz")
    assert [r.name for r in by_dir] == [r.name for r in by_file]
    for a, b in zip(by_dir, by_file, strict=True):
        assert isinstance(a, MolRecord)
        assert Chem.MolToSmiles(a.mol) == Chem.MolToSmiles(b.mol)
        assert a.mol.GetNumConformers() == 1 and a.mol.GetConformer().Is3D()
        assert a.split == ccd.split_of(inchikey_skeleton(a.mol))
    train = load_ccd_set(out, split="train")
    val = load_ccd_set(out, split="val")
    assert sorted(r.name for r in train + val) == KEPT
    with pytest.raises(ValueError):
        load_ccd_set(out, split="test")


def test_sdf_output(built):
    out, _ = built
    with gzip.open(out / "set.sdf.gz", "rb") as fh:
        mols = list(Chem.ForwardSDMolSupplier(fh, removeHs=False))
    assert [m.GetProp("_Name") for m in mols] == KEPT
    records = {r.name: r for r in load_ccd_set(out)}
    for m in mols:
        ref = records[m.GetProp("_Name")].mol
        assert m.GetNumAtoms() == ref.GetNumAtoms()
        assert m.GetProp("split") == records[m.GetProp("_Name")].split
        np.testing.assert_allclose(
            m.GetConformer().GetPositions(), ref.GetConformer().GetPositions(), atol=1e-3
        )


def test_no_excluded_molecule_in_the_set(built):
    out, _ = built
    ex = load_exclusions()
    for rec in load_ccd_set(out):
        assert rec.name not in ex.ccd_codes
        assert inchikey_skeleton(rec.mol) not in ex.skeletons
        assert not is_excluded(rec.mol, code=rec.name)


def test_exclusion_check_on_smiles():
    ex = load_exclusions()
    imatinib = Chem.MolFromSmiles("Cc1ccc(NC(=O)c2ccc(CN3CCN(C)CC3)cc2)cc1Nc1nccc(-c2cccnc2)n1")
    assert is_excluded(imatinib, exclusions=ex)
    assert is_excluded(Chem.AddHs(imatinib))  # explicit H: same skeleton
    protonated = Chem.MolFromSmiles(
        "Cc1ccc(NC(=O)c2ccc(C[NH+]3CCN(C)CC3)cc2)cc1Nc1nccc(-c2cccnc2)n1"
    )
    assert is_excluded(protonated)  # protonation is not part of the skeleton
    assert is_excluded(code="STI") and is_excluded(code="sti")
    assert not is_excluded(Chem.MolFromSmiles("c1ccccc1"), code="BNZ")
    # every row of the list excludes its own skeleton and code
    assert ex.n_rows == 4574 and len(ex.ccd_codes) == 2859
    for skeleton in list(ex.skeletons)[:50]:
        assert is_excluded(skeleton=skeleton)


def test_custom_exclusion_list_blocks_a_skeleton(tmp_path, cached_ccd, tables):
    mol = ccd.check_component(component(tables, "AIN")).mol
    key = Chem.MolToInchiKey(mol)
    tsv = tmp_path / "ex.tsv"
    tsv.write_text(f"skeleton\tinchikey\tccd_code\tsource\n{key[:14]}\t{key}\t\ttest\n")
    manifest = build_ccd_set(tmp_path / "out", codes=["AIN"], exclusions=tsv, progress=False)
    assert manifest["output"]["molecules"] == 0
    assert rejected(tmp_path / "out")["AIN"][0] == "excluded"
    assert load_ccd_set(tmp_path / "out") == []


@pytest.mark.shared_data
def test_packaged_exclusions_are_the_shared_list():
    from importlib import resources

    packaged = resources.files("rdconfvae.data").joinpath("eval_exclusions.tsv").read_bytes()
    assert packaged == SHARED_TSV.read_bytes()


def test_malformed_files_raise_data_error(tmp_path, built, cached_ccd):
    out, _ = built
    with pytest.raises(DataError, match="not found"):
        load_ccd_set(tmp_path / "nothing")
    (tmp_path / "ccd_set.npz").write_bytes(b"not a zip file")
    with pytest.raises(DataError, match="cannot read"):
        load_ccd_set(tmp_path)
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(DataError, match="missing"):
        load_ccd_set(tmp_path / "other.npz")
    with np.load(out / "ccd_set.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["blobs"] = arrays["blobs"][:-10]
    np.savez(tmp_path / "short.npz", **arrays)
    with pytest.raises(DataError, match="corrupted"):
        load_ccd_set(tmp_path / "short.npz")
    arrays["offsets"][1] = 7
    arrays["blobs"] = np.concatenate([arrays["blobs"], np.zeros(10, np.uint8)])
    np.savez(tmp_path / "garbled.npz", **arrays)
    with pytest.raises(DataError):
        load_ccd_set(tmp_path / "garbled.npz")
    (tmp_path / "bad.tsv").write_text("code\tsmiles\nSTI\tC\n")
    with pytest.raises(DataError, match="header"):
        load_exclusions(tmp_path / "bad.tsv")
    with pytest.raises(DataError, match="not in the CCD"):
        build_ccd_set(tmp_path / "x", codes=["NOT_A_CODE"], progress=False)
    with pytest.raises(DataError, match="CCD file not found"):
        build_ccd_set(tmp_path / "x", ccd_path=tmp_path / "missing.bcif", progress=False)


def test_cli(tmp_path, cached_ccd, capsys):
    assert main(["ccd", str(tmp_path / "o"), "--codes", "AIN,STI", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "kept 1 molecules" in printed and "excluded" in printed
    assert [r.name for r in load_ccd_set(tmp_path / "o")] == ["AIN"]
    assert main(["ccd", str(tmp_path / "p"), "--codes", "ZZZZZ", "--no-progress"]) == 1
    assert "not in the CCD" in capsys.readouterr().err


def test_import_does_not_load_biotite():
    code = "import sys, rdconfvae.data; assert 'biotite' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)

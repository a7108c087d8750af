"""Readers: GEOM rdkit_folder pickles and multi-conformer SDF, on fixtures written here."""

from __future__ import annotations

import gzip
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem, rdMolAlign

from rdconfvae.data.readers import (
    HARTREE_TO_KCAL,
    boltzmann_weights,
    read_geom_rdkit_folder,
    read_sdf_ensembles,
)
from rdconfvae.errors import DataError

DFT_SDF = Path(__file__).resolve().parents[1] / ".." / "shared/data/dft_ensembles/dft_public.sdf.gz"


def conformers(smiles: str, n: int, seed: int = 7) -> list[Chem.Mol]:
    """``n`` single-conformer copies of ``smiles`` with explicit H (ETKDGv3, fixed seed)."""
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    params = AllChem.ETKDGv3()
    params.randomSeed = seed
    ids = list(AllChem.EmbedMultipleConfs(mol, numConfs=n, params=params))
    assert len(ids) == n
    out = []
    for i in ids:
        m = Chem.Mol(mol, confId=i)
        out.append(m)
    return out


def mirrored(mol: Chem.Mol) -> Chem.Mol:
    m = Chem.Mol(mol)
    conf = m.GetConformer()
    for k in range(m.GetNumAtoms()):
        p = conf.GetAtomPosition(k)
        conf.SetAtomPosition(k, (-p.x, p.y, p.z))
    return m


def write_pickle(path: Path, mols, weights, energies) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    confs = [
        {"rd_mol": m, "boltzmannweight": w, "totalenergy": e, "geom_id": k}
        for k, (m, w, e) in enumerate(zip(mols, weights, energies, strict=True))
    ]
    with open(path, "wb") as fh:
        pickle.dump({"conformers": confs, "uniqueconfs": len(confs)}, fh)


BUTANOL = "C[C@H](O)CC"


@pytest.fixture(scope="module")
def geom_folder(tmp_path_factory):
    """A GEOM rdkit_folder: summary_drugs.json plus drugs/<id>.pickle, good and bad entries."""
    root = tmp_path_factory.mktemp("rdkit_folder")
    summary = {}

    def add(smiles, name, mols, weights, energies):
        write_pickle(root / "drugs" / f"{name}.pickle", mols, weights, energies)
        summary[smiles] = {"pickle_path": f"drugs/{name}.pickle", "uniqueconfs": len(mols)}

    but = conformers(BUTANOL, 4)
    e_but = [-233.10, -233.101, -233.1005, -233.099]  # Hartree; lowest is conformer 1
    add(BUTANOL, "butanol", but, [0.1, 0.5, 0.3, 0.1], e_but)
    # one conformer of the mirror image (its stereo centre inverted): dropped, not the molecule
    add("C[C@@H](O)CC", "butanol_inv", conformers("C[C@@H](O)CC", 3), [0.6, 0.3, 0.1], [0, 0, 0])
    inv = conformers(BUTANOL, 3, seed=3)
    add("OCC(C)C", "isobutanol", conformers("OCC(C)C", 2), [0.5, 0.5], [-1.0, -1.0])
    add(
        "CC[C@H](C)O",
        "stereo_mix",
        [inv[0], mirrored(inv[1]), inv[2]],
        [0.5, 0.3, 0.2],
        [-1.0, -1.0, -1.0],
    )
    # a conformer whose graph differs from the SMILES (a bond formed): molecule skipped
    add(
        "CCOC(=O)c1ccccc1",
        "ester",
        [conformers("CCOC(=O)c1ccccc1", 1)[0], conformers("CCOC(=O)c1ccccn1", 1)[0]],
        [0.7, 0.3],
        [-1.0, -1.0],
    )
    add("CCO.O", "fragments", conformers("CCO.O", 1), [1.0], [-1.0])
    add("C[Si](C)(C)C", "silane", conformers("C[Si](C)(C)C", 1), [1.0], [-1.0])
    (root / "drugs" / "corrupt.pickle").write_bytes(b"\x80\x04\x95garbage, not a pickle")
    summary["CCCCO"] = {"pickle_path": "drugs/corrupt.pickle"}
    summary["CCCCN"] = {"pickle_path": "drugs/missing.pickle"}
    summary["CCCCC"] = {"uniqueconfs": 0}
    path = root / "summary_drugs.json"
    path.write_text(json.dumps(summary))
    return path, e_but


def test_geom_reader_keeps_good_molecules_and_reports_the_rest(geom_folder):
    path, _ = geom_folder
    skipped: list[tuple[str, str]] = []
    records = read_geom_rdkit_folder(path, top_k=5, skipped=skipped)
    assert [r.name for r in records] == [BUTANOL, "C[C@@H](O)CC", "OCC(C)C", "CC[C@H](C)O"]
    reasons = dict(skipped)
    assert "graph differs" in reasons["CCOC(=O)c1ccccc1"]
    assert "fragments" in reasons["CCO.O"]
    assert "Si" in reasons["C[Si](C)(C)C"]
    assert "corrupted pickle" in reasons["CCCCO"]
    assert "cannot read" in reasons["CCCCN"]
    assert "no pickle_path" in reasons["CCCCC"]
    assert len(skipped) == 6


def test_geom_top_k_weights_energies(geom_folder):
    path, e_but = geom_folder
    (rec, *_) = read_geom_rdkit_folder(path, top_k=2, limit=1)
    assert rec.mol.GetNumConformers() == 2
    # the two highest weights (0.5, 0.3) renormalised, in that order
    np.testing.assert_allclose(rec.weights, [0.625, 0.375])
    # energies relative to the ensemble's lowest conformer (index 1), Hartree -> kcal/mol
    expected = (np.array([e_but[1], e_but[2]]) - min(e_but)) * HARTREE_TO_KCAL
    np.testing.assert_allclose(rec.energies, expected)
    assert rec.energies[0] == 0.0
    assert rec.split == ""
    # explicit H kept, stereo from 3D equals the SMILES
    assert rec.mol.GetNumAtoms() == 15
    assert Chem.MolToSmiles(Chem.RemoveHs(rec.mol)) == Chem.CanonSmiles(BUTANOL)
    (all_confs, *_) = read_geom_rdkit_folder(path, top_k=None, limit=1)
    assert all_confs.mol.GetNumConformers() == 4
    assert abs(all_confs.weights.sum() - 1.0) < 1e-12


def test_geom_drops_conformers_with_inverted_stereo(geom_folder):
    path, _ = geom_folder
    rec = {r.name: r for r in read_geom_rdkit_folder(path, top_k=None)}["CC[C@H](C)O"]
    assert rec.mol.GetNumConformers() == 2  # the mirrored one is gone
    np.testing.assert_allclose(rec.weights, [0.5 / 0.7, 0.2 / 0.7])
    for cid in range(2):
        m = Chem.Mol(rec.mol, confId=cid)
        Chem.AssignStereochemistryFrom3D(m)
        assert Chem.MolToSmiles(Chem.RemoveHs(m)) == Chem.CanonSmiles("CC[C@H](C)O")


def test_geom_bad_summary(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        read_geom_rdkit_folder(tmp_path / "nope.json")
    (tmp_path / "s.json").write_text("{not json")
    with pytest.raises(DataError, match="not a JSON"):
        read_geom_rdkit_folder(tmp_path / "s.json")
    (tmp_path / "l.json").write_text("[1, 2]")
    with pytest.raises(DataError, match="JSON object"):
        read_geom_rdkit_folder(tmp_path / "l.json")


# ------------------------------------------------------------------------------------------
# SDF


def sdf_block(mol: Chem.Mol, name: str, props: dict[str, object]) -> str:
    m = Chem.Mol(mol)
    m.SetProp("_Name", name)
    for k, v in props.items():
        m.SetProp(k, str(v))
    return (
        Chem.MolToMolBlock(m) + "".join(f">  <{k}>\n{v}\n\n" for k, v in props.items()) + "$$$$\n"
    )


BAD_RECORD = """bad
     RDKit          3D

  5  4  0  0  0  0  0  0  0  0999 V2000
    0.0000    0.0000    0.0000 N   0  0  0  0  0  0  0  0  0  0  0  0
    1.5000    0.0000    0.0000 C   0  0  0  0  0  0  0  0  0  0  0  0
   -1.5000    0.0000    0.0000 C   0  0  0  0  0  0  0  0  0  0  0  0
    0.0000    1.5000    0.0000 C   0  0  0  0  0  0  0  0  0  0  0  0
    0.0000    0.0000    1.5000 C   0  0  0  0  0  0  0  0  0  0  0  0
  1  2  1  0
  1  3  1  0
  1  4  1  0
  1  5  1  0
M  END
$$$$
"""  # a neutral four-valent nitrogen: RDKit refuses to sanitise it


@pytest.fixture(scope="module")
def sdf_text():
    """Two molecules interleaved; one record permuted, one of another graph, one unreadable."""
    a = conformers("CC(=O)Nc1ccc(O)cc1", 3)  # paracetamol
    b = conformers("OC(=O)[C@@H](N)Cc1ccccc1", 2)  # L-phenylalanine (neutral form)
    e_a = [-515.0, -515.002, -515.001]  # Hartree
    blocks = [
        sdf_block(a[0], "para", {"E_h": e_a[0], "w": 1}),
        sdf_block(b[0], "phe", {"E_h": -554.0, "w": 3}),
        sdf_block(a[1], "para", {"E_h": e_a[1], "w": 1}),
        BAD_RECORD,
        # same molecule, atoms in another order: renumbered back on reading
        sdf_block(
            Chem.RenumberAtoms(b[1], list(range(b[1].GetNumAtoms()))[::-1]),
            "phe",
            {
                "E_h": -554.001,
                "w": 1,
            },
        ),
        sdf_block(a[2], "para", {"E_h": e_a[2], "w": 2}),
        sdf_block(conformers("CC(=O)Nc1ccc(N)cc1", 1)[0], "para", {"E_h": -500.0, "w": 1}),
    ]
    return "".join(blocks), e_a, a, b


def test_sdf_groups_by_name(tmp_path, sdf_text):
    text, e_a, a, b = sdf_text
    path = tmp_path / "ens.sdf"
    path.write_text(text)
    skipped: list[tuple[str, str]] = []
    records = read_sdf_ensembles(path, energy_prop="E_h", energy_unit="hartree", skipped=skipped)
    assert [r.name for r in records] == ["para", "phe"]
    para, phe = records
    assert para.mol.GetNumConformers() == 3 and phe.mol.GetNumConformers() == 2
    expected = (np.array(e_a) - min(e_a)) * HARTREE_TO_KCAL
    np.testing.assert_allclose(para.energies, expected)
    np.testing.assert_allclose(para.weights, boltzmann_weights(expected))
    assert para.weights.argmax() == 1
    # the permuted record is back in the first record's atom order, geometry intact
    # (symmetry-equivalent atoms may swap, so compare with a symmetry-aware RMSD)
    assert rdMolAlign.GetBestRMS(Chem.Mol(phe.mol, confId=1), b[1]) < 1e-3
    assert rdMolAlign.GetBestRMS(Chem.Mol(phe.mol, confId=0), b[0]) < 1e-3
    reasons = [r for _, r in skipped]
    assert any("unreadable record" in r for r in reasons)
    assert any("graph differs" in r for r in reasons)
    assert len(skipped) == 2
    # stereo from 3D
    assert Chem.MolToSmiles(Chem.RemoveHs(phe.mol)) == Chem.CanonSmiles("OC(=O)[C@@H](N)Cc1ccccc1")


def test_sdf_weights_from_property_and_uniform(tmp_path, sdf_text):
    text, *_ = sdf_text
    path = tmp_path / "ens.sdf"
    path.write_text(text)
    para, phe = read_sdf_ensembles(path, weight_prop="w")
    np.testing.assert_allclose(para.weights, [0.25, 0.25, 0.5])
    np.testing.assert_allclose(phe.weights, [0.75, 0.25])
    assert para.energies is None
    para, _ = read_sdf_ensembles(path)
    np.testing.assert_allclose(para.weights, [1 / 3] * 3)


def test_sdf_group_by_smiles_and_property(tmp_path, sdf_text):
    text, *_ = sdf_text
    path = tmp_path / "ens.sdf"
    path.write_text(text)
    by_smiles = read_sdf_ensembles(path, group_by="smiles")
    # the record of another graph is now its own molecule
    assert sorted(r.mol.GetNumConformers() for r in by_smiles) == [1, 2, 3]
    by_prop = read_sdf_ensembles(path, group_by="prop:w")
    assert sorted(r.name for r in by_prop) == ["1", "2", "3"]


def test_sdf_gzip_and_truncated(tmp_path, sdf_text):
    text, *_ = sdf_text
    gz = tmp_path / "ens.sdf.gz"
    gz.write_bytes(gzip.compress(text.encode()))
    assert [r.name for r in read_sdf_ensembles(gz)] == ["para", "phe"]
    # truncated in the middle of the last record: everything before it is read
    cut = text[: text.rindex("M  END") - 200]
    (tmp_path / "cut.sdf").write_text(cut)
    skipped: list[tuple[str, str]] = []
    records = read_sdf_ensembles(tmp_path / "cut.sdf", skipped=skipped)
    assert [r.mol.GetNumConformers() for r in records] == [3, 2]
    assert any("unreadable" in r for _, r in skipped)
    # a gzip stream cut short
    data = gzip.compress(text.encode())
    (tmp_path / "cut.sdf.gz").write_bytes(data[: len(data) // 2])
    skipped = []
    records = read_sdf_ensembles(tmp_path / "cut.sdf.gz", skipped=skipped)
    assert records and any("damaged" in r or "unreadable" in r for _, r in skipped)


def test_sdf_bad_input(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_sdf_ensembles(tmp_path / "none.sdf")
    (tmp_path / "empty.sdf").write_text("")
    with pytest.raises(DataError, match="empty"):
        read_sdf_ensembles(tmp_path / "empty.sdf")
    (tmp_path / "bad.sdf").write_text(BAD_RECORD)
    with pytest.raises(DataError, match="could be read"):
        read_sdf_ensembles(tmp_path / "bad.sdf")
    with pytest.raises(ValueError):
        read_sdf_ensembles(tmp_path / "bad.sdf", energy_unit="furlongs")
    with pytest.raises(ValueError):
        read_sdf_ensembles(tmp_path / "bad.sdf", group_by="colour")


def test_sdf_unsupported_element_is_skipped(tmp_path):
    mol = conformers("C[Si](C)(C)C", 1)[0]
    path = tmp_path / "si.sdf"
    path.write_text(sdf_block(mol, "tms", {}) + sdf_block(conformers("CCO", 1)[0], "eth", {}))
    skipped: list[tuple[str, str]] = []
    assert [r.name for r in read_sdf_ensembles(path, skipped=skipped)] == ["eth"]
    assert skipped == [("tms", "element(s) Si outside the allowed set")]
    assert len(read_sdf_ensembles(path, allowed_elements=None)) == 2


@pytest.mark.shared_data
def test_reads_the_dft_benchmark_file():
    records = read_sdf_ensembles(
        DFT_SDF,
        group_by="prop:mol_id",
        energy_prop="E_b3lyp_d3bj_def2svp_hartree",
        energy_unit="hartree",
        allowed_elements=None,
    )
    # 454 molecules, 4,482 conformers (shared/README.md)
    assert len(records) == 454
    assert sum(r.mol.GetNumConformers() for r in records) == 4482
    # our Hartree -> relative kcal/mol equals the file's own relE (4 decimals)
    rel = read_sdf_ensembles(
        DFT_SDF,
        group_by="prop:mol_id",
        energy_prop="relE_b3lyp_d3bj_def2svp_kcal",
        allowed_elements=None,
    )
    for r, q in zip(records[:50], rel[:50], strict=True):
        np.testing.assert_allclose(r.energies, q.energies, atol=2e-3)

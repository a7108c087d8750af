"""DataFrames: embed_frame per molecule / per conformer, PandasTools round trip, KNIME table."""

from __future__ import annotations

import doctest
import math
import runpy
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from rdkit import Chem

import rdconfvae.integrations.pandas as rpd
from rdconfvae.batch.unit import EmbedOptions, embed_one
from rdconfvae.integrations.pandas import embed_frame, knime_table

pd = pytest.importorskip("pandas")
from rdkit.Chem import PandasTools  # noqa: E402 -- needs pandas

NODE_SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "knime" / "rdconfvae_node.py"
N = 3


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "smiles": ["CCO", "CC(=O)Nc1ccc(O)cc1", "not a smiles", None, "[Cu+2]"],
            "name": ["ethanol", "paracetamol", "broken", "missing", "copper"],
            "assay": [1.5, 2.5, 3.5, 4.5, 5.5],
        },
        index=[10, 11, 12, 13, 14],
    )


@pytest.fixture(scope="module")
def per_conformer(table) -> pd.DataFrame:
    return embed_frame(
        table,
        smiles_col="smiles",
        n=N,
        rows="conformer",
        name_col="name",
        mmff=True,
        fallback="raise",
        seed=3,
    )


def _heavy_bond_lengths(mol: Chem.Mol, conf_id: int = -1) -> list[float]:
    pos = mol.GetConformer(conf_id).GetPositions()
    return [
        float(np.linalg.norm(pos[b.GetBeginAtomIdx()] - pos[b.GetEndAtomIdx()]))
        for b in mol.GetBonds()
        if b.GetBeginAtom().GetAtomicNum() > 1 and b.GetEndAtom().GetAtomicNum() > 1
    ]


def test_one_row_per_molecule(table):
    before = table.copy()
    out = embed_frame(table, smiles_col="smiles", n=N, name_col="name", fallback="raise")
    pd.testing.assert_frame_equal(table, before)  # the input is not changed
    assert list(out.index) == list(table.index)
    assert list(out.columns[:3]) == ["smiles", "name", "assay"]
    assert out["status"].tolist() == ["ok", "ok", "failed", "failed", "failed"]
    assert out["n_conformers"].tolist() == [N, N, 0, 0, 0]
    for mol in out.loc[[10, 11], "ROMol"]:
        assert mol.GetNumConformers() == N and mol.GetConformer().Is3D()
        assert mol.GetNumAtoms() > mol.GetNumHeavyAtoms()  # hydrogens added, with coordinates
        assert all(1.15 < d < 1.6 for d in _heavy_bond_lengths(mol))
    assert out.loc[10, "ROMol"].GetProp("_Name") == "ethanol"
    failed = out[out["status"] == "failed"]
    assert failed["ROMol"].isna().all()
    assert failed.loc[12, "error"].startswith("InvalidInputError: invalid SMILES")
    assert failed.loc[13, "error"].startswith("InvalidInputError: missing molecule")
    assert failed.loc[14, "error"].startswith("UnsupportedMoleculeError")
    assert (out.loc[[10, 11], "error"] == "").all()


def test_one_row_per_conformer_with_energies(per_conformer):
    out = per_conformer
    ok = out[out["status"] == "ok"]
    assert len(ok) == 2 * N and len(out) == 2 * N + 3  # failed molecules keep one row each
    assert ok.index.tolist() == [10] * N + [11] * N  # input rows repeated, labels kept
    assert ok["conformer_id"].tolist() == list(range(N)) * 2
    assert ok["assay"].tolist() == [1.5] * N + [2.5] * N
    for _, row in ok.iterrows():
        mol = row["ROMol"]
        assert mol.GetNumConformers() == 1 and mol.GetConformer().Is3D()
        assert mol.GetConformer().GetId() == row["conformer_id"]
        assert mol.GetProp("_Name") == row["name"]
        assert math.isfinite(row["MMFF_ENERGY"])  # kcal/mol, from mmff=True
        assert float(mol.GetProp("MMFF_ENERGY")) == pytest.approx(row["MMFF_ENERGY"])
        assert row["rdconfvae_generator"] == "rdconfvae"
    failed = out[out["status"] == "failed"]
    assert failed["conformer_id"].isna().all() and failed["MMFF_ENERGY"].isna().all()
    assert failed["ROMol"].isna().all() and (failed["error"] != "").all()


def test_same_conformers_as_embed_one(table, per_conformer):
    """Per-conformer rows hold exactly the conformers embed_one makes with the same options."""
    ref = embed_one(
        "CC(=O)Nc1ccc(O)cc1",
        "paracetamol",
        1,
        EmbedOptions(n=N, mmff=True, fallback="raise", seed=3),
    ).mol
    rows = per_conformer.loc[11]
    for conf, mol in zip(ref.GetConformers(), rows["ROMol"], strict=True):
        np.testing.assert_array_equal(conf.GetPositions(), mol.GetConformer().GetPositions())


def test_pandastools_writes_every_conformer(per_conformer, tmp_path):
    ok = per_conformer[per_conformer["status"] == "ok"]
    path = tmp_path / "confs.sdf"
    PandasTools.WriteSDF(
        ok,
        str(path),
        molColName="ROMol",
        properties=["name", "conformer_id", "MMFF_ENERGY", "assay"],
    )
    back = [m for m in Chem.SDMolSupplier(str(path), removeHs=False)]
    assert len(back) == len(ok) == 2 * N
    assert [m.GetProp("_Name") for m in back] == ok["name"].tolist()
    assert [int(m.GetProp("conformer_id")) for m in back] == ok["conformer_id"].tolist()
    energies = [float(m.GetProp("MMFF_ENERGY")) for m in back]
    np.testing.assert_allclose(energies, ok["MMFF_ENERGY"].to_numpy(), atol=1e-4)
    for m, src in zip(back, ok["ROMol"], strict=True):  # each record is its own conformer
        np.testing.assert_allclose(
            m.GetConformer().GetPositions(), src.GetConformer().GetPositions(), atol=1e-3
        )
    # PandasTools reads it back as a frame with the same rows
    loaded = PandasTools.LoadSDF(str(path), removeHs=False)
    assert len(loaded) == len(ok)


def test_mol_column_from_pandastools_and_rendering():
    df = pd.DataFrame({"smiles": ["c1ccccc1O", "CC(C)Cc1ccc(cc1)[C@@H](C)C(=O)O"]})
    PandasTools.AddMoleculeColumnToFrame(df, "smiles", "ROMol")
    out = embed_frame(df, mol_col="ROMol", n=2)  # replaces the input molecules
    assert out["status"].tolist() == ["ok", "ok"]
    assert all(m.GetNumConformers() == 2 for m in out["ROMol"])
    assert all(df["ROMol"].map(lambda m: m.GetNumConformers() == 0))  # inputs untouched
    html = out._repr_html_()  # PandasTools draws the molecules
    assert "data:image" in html or "<svg" in html


def test_bad_arguments(table):
    with pytest.raises(TypeError):
        embed_frame(table, n=2)
    with pytest.raises(TypeError):
        embed_frame(table, smiles_col="smiles", mol_col="smiles", n=2)
    with pytest.raises(KeyError):
        embed_frame(table, smiles_col="SMILES", n=2)
    with pytest.raises(ValueError):
        embed_frame(table, smiles_col="smiles", n=2, rows="atom")
    with pytest.raises(ValueError):
        embed_frame(table, smiles_col="smiles", n=0)
    with pytest.raises(TypeError):
        embed_frame(table, smiles_col="smiles", n=2, temperature=2.0)  # unknown option


def test_knime_table_per_conformer(table):
    out = knime_table(table.drop(columns=["name"]), n=2, mmff=True, fallback="raise")
    assert out.index.is_unique
    assert out.index.tolist() == ["10_0", "10_1", "11_0", "11_1", "12", "13", "14"]
    assert not any(isinstance(v, Chem.Mol) for v in out.to_numpy().ravel())
    ok = out[out["status"] == "ok"]
    for row_id, row in ok.iterrows():
        supplier = Chem.SDMolSupplier()
        supplier.SetData(row["SDF"], removeHs=False)
        mols = list(supplier)
        assert len(mols) == 1 and mols[0].GetConformer().Is3D()
        assert mols[0].GetProp("_Name") == row_id.split("_")[0]  # named by the row ID
        assert float(mols[0].GetProp("MMFF_ENERGY")) == pytest.approx(row["MMFF_ENERGY"])
    assert out.loc[["12", "13", "14"], "SDF"].isna().all()


def test_knime_table_per_molecule_holds_all_conformers():
    df = pd.DataFrame({"Structure": ["CCO", "CCN"]}, index=["Row0", "Row1"])
    out = knime_table(df, n=3, rows="molecule")
    assert out.index.tolist() == ["Row0", "Row1"]
    supplier = Chem.SDMolSupplier()
    supplier.SetData(out.loc["Row1", "SDF"], removeHs=False)
    mols = list(supplier)
    assert [m.GetIntProp("conformer_id") for m in mols] == [0, 1, 2]
    with pytest.raises(KeyError):
        knime_table(pd.DataFrame({"x": ["CCO"]}), n=1)


def test_knime_node_script_runs_on_a_stand_in_for_knime(monkeypatch):
    """The node script, run against a minimal stand-in for ``knime.scripting.io``."""
    frame = pd.DataFrame({"Name": ["a", "b"], "SMILES": ["CCO", "C1CC1("]}, index=["Row0", "Row1"])

    class Table:
        def __init__(self, df):
            self.df = df

        def to_pandas(self):
            return self.df.copy()

        @classmethod
        def from_pandas(cls, df):
            return cls(df)

    io = types.ModuleType("knime.scripting.io")
    io.input_tables = [Table(frame)]
    io.output_tables = [None]
    io.flow_variables = {"rdconfvae_n": 2, "rdconfvae_mmff": "false"}
    io.Table = Table
    knime = types.ModuleType("knime")
    scripting = types.ModuleType("knime.scripting")
    knime.scripting, scripting.io = scripting, io
    for name, mod in (("knime", knime), ("knime.scripting", scripting), ("knime.scripting.io", io)):
        monkeypatch.setitem(sys.modules, name, mod)
    runpy.run_path(str(NODE_SCRIPT), run_name="__main__")
    out = io.output_tables[0].df
    assert out["status"].tolist() == ["ok", "ok", "failed"]
    assert out.index.tolist() == ["Row0_0", "Row0_1", "Row1"]
    assert out["MMFF_ENERGY"].isna().all()  # rdconfvae_mmff = "false" was honoured
    assert "SDF" in out and out.loc["Row1", "error"].startswith("InvalidInputError")


def test_doctests():
    assert doctest.testmod(rpd, raise_on_error=False).failed == 0

"""Input files of the batch surfaces: damaged, mislabelled and odd files (rdconfvae.batch.inputs).

Read through ``rdconfvae.batch.stream.read_molecules``, the reader ``rdconfvae embed`` uses. Every
file either yields its good records, with a per-record problem naming the file and line for
each bad one, or raises one ``InvalidInputError`` naming the file (and line).
"""

from __future__ import annotations

import gzip
import logging
import random

import pytest
from rdkit import Chem

from rdconfvae.batch.stream import count_records, read_molecules
from rdconfvae.errors import InvalidInputError


def _block(smiles: str, name: str) -> str:
    mol = Chem.MolFromSmiles(smiles)
    mol.SetProp("_Name", name)
    mol.SetProp("source_id", name.upper())
    return Chem.MolToMolBlock(mol) + f">  <source_id>\n{name.upper()}\n\n$$$$\n"


SDF = _block("CCO", "ethanol") + _block("c1ccccc1O", "phenol") + _block("CCN", "ethylamine")


def _read(path, fmt=None):
    records = list(read_molecules(path, fmt))
    assert count_records(path, fmt) == len(records)  # the ETA and the build's sharding
    return records


def test_sdf_with_a_broken_record_in_the_middle(tmp_path):
    """RDKit's supplier used to swallow the record after a broken one (2 records of 3)."""
    first, _, third = SDF.split("$$$$\n")[:3]
    path = tmp_path / "in.sdf"
    path.write_text(first + "$$$$\nnot a mol block\nat all\n$$$$\n" + third + "$$$$\n")
    recs = _read(path)
    assert [r.name for r in recs] == ["ethanol", "record2", "ethylamine"]
    assert recs[1].item is None and recs[1].problem.startswith("in.sdf line ")
    assert "unreadable SDF record" in recs[1].problem
    lines = path.read_text().splitlines()
    assert lines[int(recs[1].problem.split()[2].rstrip(":")) - 1] == "not a mol block"
    assert recs[2].item.GetProp("source_id") == "ETHYLAMINE"  # SD fields kept
    assert recs[2].where == f"in.sdf line {lines.index('ethylamine') + 1}"


def test_truncated_sdf_and_truncated_gzip(tmp_path):
    cut = tmp_path / "cut.sdf"
    cut.write_text(SDF[: SDF.index("ethylamine") + 60])  # ends inside the third record
    recs = _read(cut)
    assert [r.item is not None for r in recs] == [True, True, False]
    assert "the file ends inside it" in recs[2].problem
    data = gzip.compress(SDF.encode())
    gz = tmp_path / "cut.sdf.gz"
    gz.write_bytes(data[: len(data) * 2 // 3])
    recs = _read(gz)
    assert recs[0].name == "ethanol" and recs[0].item is not None  # read before the damage
    assert recs[-1].item is None
    assert "cut.sdf.gz: the file ends early or is damaged" in recs[-1].problem


@pytest.mark.parametrize("name", ["garbage.smi", "garbage.sdf", "garbage.csv"])
def test_binary_garbage_is_one_clear_error(tmp_path, name):
    path = tmp_path / name
    head = b"smiles,name\nCCO,ok\n" if name.endswith(".csv") else b"CCO ok\n"
    path.write_bytes(head + random.Random(1).randbytes(2000))
    with pytest.raises(InvalidInputError, match=rf"{name} line \d+: binary data"):
        _read(path)


def test_gz_name_on_a_plain_file(tmp_path):
    path = tmp_path / "in.sdf.gz"
    path.write_text(SDF)
    with pytest.raises(InvalidInputError, match="in.sdf.gz: not a gzip file"):
        list(read_molecules(path))


def test_csv_without_smiles_column_and_with_a_byte_order_mark(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("id,structure\nm1,CCO\n")
    with pytest.raises(InvalidInputError, match=r"in.csv line 1: no 'smiles' column"):
        _read(path)
    path.write_bytes("\ufeffSMILES,name\nCCO,ethanol\n\nCCN,amine\n".encode())  # Excel's UTF-8
    recs = _read(path)
    assert [(r.item, r.name, r.where) for r in recs] == [
        ("CCO", "ethanol", "in.csv line 2"),
        ("CCN", "amine", "in.csv line 4"),
    ]


def test_mixed_line_endings_header_and_tab_columns(tmp_path):
    path = tmp_path / "in.smi"
    path.write_bytes(
        b"smiles\tinchikey\tsource\r\nCCO\tKEY1\tpool\rc1ccccc1O phenol\nCCN ethyl amine\r\n"
    )
    recs = _read(path)
    assert [(r.item, r.name) for r in recs] == [
        ("CCO", "KEY1"),
        ("c1ccccc1O", "phenol"),
        ("CCN", "ethyl amine"),
    ]
    assert [r.where for r in recs] == ["in.smi line 2", "in.smi line 3", "in.smi line 4"]


def test_names_that_are_not_utf8(tmp_path, caplog):
    path = tmp_path / "in.smi"
    path.write_bytes("CCO \xe9thanol\nCCN amine-\xdf\n".encode("latin-1"))
    with caplog.at_level(logging.WARNING, logger="rdconfvae"):
        recs = _read(path)
    assert [(r.item, r.name) for r in recs] == [("CCO", "\ufffdthanol"), ("CCN", "amine-\ufffd")]
    warnings = [r.getMessage() for r in caplog.records if "not UTF-8" in r.getMessage()]
    assert len(warnings) == 2  # _read reads twice: once per pass, naming the first line
    assert all(w.startswith(f"{path} line 1:") for w in warnings)


def test_unknown_extension_is_refused_unless_a_format_is_given(tmp_path):
    path = tmp_path / "molecules.txt"
    path.write_text("CCO ethanol\n")
    with pytest.raises(InvalidInputError, match=r"unknown input extension \.txt.*--format"):
        list(read_molecules(path))
    assert [r.name for r in _read(path, "smi")] == ["ethanol"]
    for ext in (".smi", ".smiles", ".ism"):
        (tmp_path / f"m{ext}.gz").write_bytes(gzip.compress(b"CCO ethanol\n"))
        assert [r.item for r in _read(tmp_path / f"m{ext}.gz")] == ["CCO"]

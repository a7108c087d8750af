"""Benchmark molecules: reading reference SDFs, the stratified sample, the generator input."""

from __future__ import annotations

import gzip
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

import numpy as np
from rdkit import Chem
from rdkit.Chem import rdMolDescriptors

from rdconfvae.evaluation import metrics

log = logging.getLogger(__name__)

#: Rotatable-bond bins (inclusive bounds) of the stratified sample.
ROT_BINS = ((0, 2), (3, 4), (5, 6), (7, 9), (10, 10_000))
#: Seed of the stratified sample; fixed so that every run draws the same molecules.
SAMPLE_SEED = 0


@dataclass
class Record:
    """One benchmark molecule: reference heavy-atom conformers and the rebuilt graph."""

    name: str
    ref: Chem.Mol  # hydrogen-free, one conformer per reference geometry
    smiles: str  # canonical isomeric, stereo from the (first) reference geometry
    n_heavy: int
    n_rot: int


def _open(path: Path) -> BinaryIO:
    return cast(BinaryIO, gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb"))


def _read_sdf(path: Path) -> list[Chem.Mol]:
    mols, bad = [], 0
    with _open(path) as fh:
        for mol in Chem.ForwardSDMolSupplier(fh, removeHs=False):
            if mol is None:
                bad += 1
            else:
                mols.append(mol)
    if bad:
        log.warning("%s: %d unreadable records skipped", path, bad)
    return mols


def _group_key(mol: Chem.Mol) -> str:
    if mol.HasProp("mol_id"):
        return mol.GetProp("mol_id")
    return mol.GetProp("_Name").split("/")[0] if mol.HasProp("_Name") else ""


def make_record(name: str, mol: Chem.Mol) -> Record:
    heavy = metrics.heavy_atom_mol(mol)
    probe = Chem.Mol(heavy)
    Chem.AssignStereochemistryFrom3D(probe, confId=heavy.GetConformers()[0].GetId())
    smiles = Chem.MolToSmiles(probe)
    graph = Chem.MolFromSmiles(smiles)
    if graph is None:
        raise ValueError(f"{name}: rebuilt SMILES does not parse: {smiles}")
    return Record(
        name=name,
        ref=heavy,
        smiles=smiles,
        n_heavy=heavy.GetNumAtoms(),
        n_rot=int(rdMolDescriptors.CalcNumRotatableBonds(graph)),
    )


def load_records(path: str | Path, task: str) -> list[Record]:
    """Read benchmark molecules from an SDF (optionally gzipped).

    ``platinum`` / ``validity``: one record per SDF entry (name = record title).
    ``ensembles``: entries grouped by the ``mol_id`` property (else the title up to ``/``);
    every conformer of a group must have the same atoms in the same order.
    """
    path = Path(path)
    mols = _read_sdf(path)
    records: list[Record] = []
    if task != "ensembles":
        named = []
        for i, mol in enumerate(mols):
            name = mol.GetProp("_Name") if mol.HasProp("_Name") else ""
            named.append((name or f"record{i}", mol))
    else:
        named = list(_group_conformers(mols).items())
    for name, mol in named:
        try:
            records.append(make_record(name, mol))
        except ValueError as exc:
            log.warning("skipped %s: %s", name, exc)
    return records


def _group_conformers(mols: Sequence[Chem.Mol]) -> dict[str, Chem.Mol]:
    """One molecule per ``mol_id`` (or title prefix) holding all of its conformers."""
    groups: dict[str, Chem.Mol] = {}
    for mol in mols:
        key = _group_key(mol)
        if key not in groups:
            groups[key] = Chem.Mol(mol)
            continue
        first = groups[key]
        same = first.GetNumAtoms() == mol.GetNumAtoms() and all(
            a.GetAtomicNum() == b.GetAtomicNum()
            for a, b in zip(first.GetAtoms(), mol.GetAtoms(), strict=True)
        )
        if not same:
            log.warning(
                "%s: conformer %s has a different atom order, skipped",
                key,
                mol.GetProp("_Name") if mol.HasProp("_Name") else "?",
            )
            continue
        first.AddConformer(Chem.Conformer(mol.GetConformer()), assignId=True)
    return groups


def rot_bin_label(lo: int, hi: int) -> str:
    """How the tables name the bin ``(lo, hi)`` of :data:`ROT_BINS`: "3-4", the last "10+"."""
    return f"{lo}+" if hi == ROT_BINS[-1][1] else f"{lo}-{hi}"


def _rot_bin(n_rot: int) -> int:
    for i, (lo, hi) in enumerate(ROT_BINS):
        if lo <= n_rot <= hi:
            return i
    return len(ROT_BINS) - 1


def select_records(records: Sequence[Record], limit: int | None, sample: str) -> list[Record]:
    """Choose at most ``limit`` records.

    ``first``: the first ``limit`` records in file order. ``stratified``: proportional
    allocation over the rotatable-bond bins :data:`ROT_BINS` (largest remainder), records
    drawn within each bin by a permutation with the fixed seed :data:`SAMPLE_SEED` after
    sorting by name; the selection keeps file order. Deterministic for a given data file.
    """
    if limit is None or limit >= len(records):
        return list(records)
    if sample == "first":
        return list(records[:limit])
    if sample != "stratified":
        raise ValueError(f"unknown sample {sample!r}")
    bins: dict[int, list[int]] = {}
    for i, rec in enumerate(records):
        bins.setdefault(_rot_bin(rec.n_rot), []).append(i)
    total = len(records)
    quota = {b: limit * len(idx) / total for b, idx in bins.items()}
    alloc = {b: int(math.floor(q)) for b, q in quota.items()}
    rest = limit - sum(alloc.values())
    for b in sorted(quota, key=lambda b: (-(quota[b] - alloc[b]), b))[:rest]:
        alloc[b] += 1
    rng = np.random.default_rng(SAMPLE_SEED)
    chosen: list[int] = []
    for b in sorted(bins):
        idx = sorted(bins[b], key=lambda i: records[i].name)
        perm = rng.permutation(len(idx))
        chosen.extend(idx[j] for j in perm[: alloc[b]])
    return [records[i] for i in sorted(chosen)]


def input_mol(record: Record) -> Chem.Mol:
    """The generator input: graph from the SMILES, explicit hydrogens, no conformer."""
    mol = Chem.AddHs(Chem.MolFromSmiles(record.smiles))
    mol.SetProp("_Name", record.name)
    return mol

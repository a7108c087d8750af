"""Training data: records from a CCD set or an SDF, the exclusion guard, featurised examples
and their batches."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rdconfvae.errors import DataError, RdConfVAEError
from rdconfvae.model import featurize as fz
from rdconfvae.train.presets import Preset

log = logging.getLogger(__name__)


@dataclass
class Example:
    """One training molecule: graph tensors and heavy-atom reference coordinates (N, 3)."""

    name: str
    graph: fz.MolGraph
    coords: torch.Tensor


def load_records(path: Path) -> list:
    """MolRecords from a CCD set directory/npz (built on demand) or an SDF file."""
    from rdconfvae.data import MolRecord, load_ccd_set

    suffixes = "".join(path.suffixes[-2:])
    if suffixes.endswith(".sdf") or suffixes.endswith(".sdf.gz"):
        import gzip

        from rdkit import Chem

        opener = gzip.open if suffixes.endswith(".gz") else open
        records = []
        with opener(path, "rb") as fh:
            for i, mol in enumerate(Chem.ForwardSDMolSupplier(fh, removeHs=False)):
                if mol is None or mol.GetNumConformers() == 0:
                    log.warning("SDF record %d skipped: unreadable or no coordinates", i)
                    continue
                name = mol.GetProp("_Name") if mol.HasProp("_Name") else f"record{i}"
                digest = int(hashlib.sha256(name.encode()).hexdigest(), 16)
                records.append(
                    MolRecord(
                        name=name,
                        mol=mol,
                        weights=np.ones(1),
                        energies=None,
                        split="val" if digest % 100 < 5 else "train",
                    )
                )
        return records
    if path.is_dir() and not (path / "ccd_set.npz").exists():
        from rdconfvae.data import build_ccd_set

        log.info("no CCD set in %s: building it (about 10 minutes)", path)
        build_ccd_set(path)
    return load_ccd_set(path)


def check_exclusions(records: list, names_are_ccd_codes: bool) -> None:
    """Refuse to train on any benchmark molecule (InChIKey skeleton, and CCD code when
    the record names are CCD codes)."""
    from rdconfvae.data import is_excluded

    bad = [
        r.name for r in records if is_excluded(r.mol, code=r.name if names_are_ccd_codes else None)
    ]
    if bad:
        raise DataError(
            f"{len(bad)} training molecules are on the evaluation exclusion list "
            f"(e.g. {', '.join(bad[:5])}); rebuild the set"
        )


def checkpoint_selection(n_val: int, preset: Preset) -> list[int]:
    """Indices (sorted) into the ``n_val`` validation records of the molecules that select
    training checkpoints: the first ``preset.val_molecules`` of a permutation drawn with
    ``preset.seed + 1``. The trainer uses these; a diagnostic that must not evaluate on them
    leaves them out."""
    perm = np.random.default_rng(preset.seed + 1).permutation(n_val)
    return sorted(int(i) for i in perm[: preset.val_molecules])


def featurize_records(records: list, max_heavy: int) -> tuple[list[Example], dict[str, int]]:
    """Heavy-atom graphs + coordinates; molecules the featurizer rejects are counted."""
    examples: list[Example] = []
    skipped: dict[str, int] = {}
    for rec in records:
        try:
            heavy, heavy_idx = fz.heavy_atom_mol(rec.mol)
            if heavy.GetNumAtoms() > max_heavy:
                raise fz.MoleculeTooLargeError("too large")
            graph = fz.featurize(heavy)
        except RdConfVAEError as exc:
            key = type(exc).__name__
            skipped[key] = skipped.get(key, 0) + 1
            continue
        pos = rec.mol.GetConformer().GetPositions()[heavy_idx]
        examples.append(Example(rec.name, graph, torch.tensor(pos, dtype=torch.float32)))
    return examples, skipped


@dataclass
class Batch:
    """Flattened graphs plus the dense layout the solver needs.

    Shapes: B molecules, N atoms in all, P pairs in all, L = largest molecule.
    """

    atom_feat: torch.Tensor  # (N, F_atom)
    pair_feat: torch.Tensor  # (P, F_pair)
    pair_i: torch.Tensor  # (P,) global atom index
    pair_j: torch.Tensor
    inv_deg: torch.Tensor  # (N,)
    ref_dist: torch.Tensor  # (P,)
    pair_mol: torch.Tensor  # (P,) molecule of each pair
    pair_li: torch.Tensor  # (P,) local atom index in its molecule
    pair_lj: torch.Tensor
    mask: torch.Tensor  # (B, L)
    ref_dense: torch.Tensor  # (B, L, 3)

    def to(self, device: torch.device) -> Batch:
        return Batch(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))


def collate(examples: list[Example]) -> Batch:
    sizes = [ex.graph.num_atoms for ex in examples]
    largest = max(sizes)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    mask = torch.zeros(len(examples), largest)
    ref = torch.zeros(len(examples), largest, 3)
    pi, pj, li, lj, pm, rd, inv = [], [], [], [], [], [], []
    for b, (ex, off) in enumerate(zip(examples, offsets, strict=True)):
        g = ex.graph
        n = g.num_atoms
        mask[b, :n] = 1.0
        ref[b, :n] = ex.coords
        pi.append(g.pair_i + int(off))
        pj.append(g.pair_j + int(off))
        li.append(g.pair_i)
        lj.append(g.pair_j)
        pm.append(torch.full((g.num_pairs,), b, dtype=torch.long))
        rd.append((ex.coords[g.pair_i] - ex.coords[g.pair_j]).norm(dim=-1))
        inv.append(torch.full((n,), 1.0 / max(n - 1, 1)))
    return Batch(
        atom_feat=torch.cat([ex.graph.atom_feat for ex in examples]),
        pair_feat=torch.cat([ex.graph.pair_feat for ex in examples]),
        pair_i=torch.cat(pi),
        pair_j=torch.cat(pj),
        inv_deg=torch.cat(inv),
        ref_dist=torch.cat(rd),
        pair_mol=torch.cat(pm),
        pair_li=torch.cat(li),
        pair_lj=torch.cat(lj),
        mask=mask,
        ref_dense=ref,
    )


def dense_pairs(values: torch.Tensor, batch: Batch, fill: float) -> torch.Tensor:
    """Scatter per-pair values (P,) into symmetric (B, L, L) matrices."""
    b, largest = batch.mask.shape
    out = torch.full((b, largest, largest), fill, dtype=values.dtype, device=values.device)
    out = out.index_put((batch.pair_mol, batch.pair_li, batch.pair_lj), values)
    out = out.index_put((batch.pair_mol, batch.pair_lj, batch.pair_li), values)
    return out


def data_hash(examples: list[Example]) -> str:
    h = hashlib.sha256()
    for ex in examples:
        h.update(ex.name.encode())
        h.update(ex.coords.numpy().round(3).tobytes())
    return h.hexdigest()

"""Why flexible molecules miss: wrong rotamers or accumulated small errors? CCD validation.

    python benchmarks/diagnostics/flexible_misses.py --per-bin 40 \
        > benchmarks/diagnostics/flexible_misses.md

Held-out CCD validation molecules (never the 400 that pick checkpoints, never a benchmark
set; the pool and order of ``decoder_bottleneck.py``) with 5 or more rotatable bonds, embedded
as a user would (``rdconfvae.embed(mol, n=50)`` from the rebuilt SMILES with hydrogens, the
benchmark's input). For the conformer closest to the experimental one (heavy-atom,
symmetry-aware RMSD; the atom correspondence of that minimum), every acyclic single bond
between two non-terminal heavy atoms is compared with the experimental torsion:

* wrong rotamers: torsions more than 60 degrees from the experimental value (another
  staggered well);
* oracle repairs, applied to that best conformer's coordinates (bond lengths, angles and
  rings untouched): the worst torsion set to its experimental value; every wrong rotamer set;
  every torsion set; and every torsion fitted to minimise the RMSD (Powell, from the
  experimental and from the conformer's own torsions): the floor of any torsion-space search
  that keeps the model's bond lengths, angles and rings;
* non-aromatic rings whose atoms, superposed alone, are more than 0.25 A from the experiment
  (another ring pucker);
* coverage: the experimental value of each torsion (any symmetry-equivalent labelling) within
  30 degrees in at least one of the n samples. If every torsion is covered, the samples hold
  the pose's rotamers between them, and recombining their torsions could reach it.

If misses have few wrong rotamers and the repairs bring them below 1 A, a sampler that
enumerates rotamers around the model's conformers could reach them; if the floor itself is
high, the decoder's local geometry is the limit. Nothing here trains or selects a model.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from rdkit import Chem
from rdkit.Chem import rdMolTransforms
from scipy.optimize import minimize

import rdconfvae
from rdconfvae.bench import ROT_BINS, input_mol, rot_bin_label
from rdconfvae.bench.records import make_record
from rdconfvae.data import MolRecord
from rdconfvae.evaluation.metrics import heavy_atom_mol, superposed_rmsd, symmetry_matches
from rdconfvae.model.store import load_model
from rdconfvae.train import PRESETS, checkpoint_selection, load_records

#: acyclic single bond between two atoms with other heavy neighbours (not a triple-bond axis)
TORSION_BOND = Chem.MolFromSmarts("[!D1&!$(*#*)]-&!@[!D1&!$(*#*)]")
WRONG_DEG = 60.0
#: a sample's torsion "has" the experimental rotamer within this many degrees
COVER_DEG = 30.0
#: a non-aromatic ring whose atoms (superposed alone) are this far from the experiment (A)
RING_OFF = 0.25


def torsions(heavy: Chem.Mol) -> list[tuple[int, int, int, int]]:
    """One torsion (a, b, c, d) per rotatable bond b-c of a hydrogen-free molecule."""
    out = []
    for b, c in heavy.GetSubstructMatches(TORSION_BOND):
        a = min(n.GetIdx() for n in heavy.GetAtomWithIdx(b).GetNeighbors() if n.GetIdx() != c)
        d = min(n.GetIdx() for n in heavy.GetAtomWithIdx(c).GetNeighbors() if n.GetIdx() != b)
        out.append((a, b, c, d))
    return out


def dihedral(xyz: np.ndarray, t: tuple[int, int, int, int]) -> float:
    p0, p1, p2, p3 = (xyz[i] for i in t)
    b0, b1, b2 = p0 - p1, p2 - p1, p3 - p2
    b1 = b1 / np.linalg.norm(b1)
    v = b0 - np.dot(b0, b1) * b1
    w = b2 - np.dot(b2, b1) * b1
    return float(np.degrees(np.arctan2(np.dot(np.cross(b1, v), w), np.dot(v, w))))


def angle_diff(a: float, b: float) -> float:
    return abs((a - b + 180.0) % 360.0 - 180.0)


def best_match(probe: np.ndarray, ref: np.ndarray, matches: np.ndarray) -> tuple[float, np.ndarray]:
    """RMSD and the correspondence (probe atom i -> ref atom m[i]) of the best superposition."""
    rms = [float(superposed_rmsd(probe[None], ref[None], m[None])[0, 0]) for m in matches]
    k = int(np.argmin(rms))
    return rms[k], matches[k]


def analyse(rec_mol: Chem.Mol, name: str, n: int, seed: int) -> dict:
    record = make_record(name, rec_mol)
    mol = input_mol(record)
    rdconfvae.embed(mol, n=n, seed=seed)
    gen = heavy_atom_mol(mol)
    ref = record.ref
    matches = symmetry_matches(gen, ref)
    ref_xyz = ref.GetConformer().GetPositions()
    ref_by_match = np.stack([ref_xyz[m] for m in matches])  # (K, N, 3) in gen atom order
    gen_xyz = np.stack([c.GetPositions() for c in gen.GetConformers()])
    per_conf = superposed_rmsd(gen_xyz, ref_xyz[None], matches)[:, 0]
    best_conf = gen.GetConformers()[int(np.argmin(per_conf))]
    best, m = best_match(best_conf.GetPositions(), ref_xyz, matches)
    target = ref_xyz[m]  # experimental coordinates in gen atom order
    tors = torsions(gen)
    devs = [angle_diff(dihedral(best_conf.GetPositions(), t), dihedral(target, t)) for t in tors]

    def repaired(which: list[int]) -> float:
        work = Chem.Mol(gen, confId=best_conf.GetId())
        conf = work.GetConformer()
        for i in which:
            rdMolTransforms.SetDihedralDeg(conf, *tors[i], dihedral(target, tors[i]))
        rms = superposed_rmsd(conf.GetPositions()[None], ref_by_match, np.arange(len(m))[None])
        return float(rms.min())

    ident = np.arange(len(m))[None]
    work = Chem.Mol(gen, confId=best_conf.GetId())

    def rmsd_at(angles: np.ndarray) -> float:
        conf = work.GetConformer()
        for t, angle in zip(tors, angles, strict=True):
            rdMolTransforms.SetDihedralDeg(conf, *t, float(angle))
        return float(superposed_rmsd(conf.GetPositions()[None], target[None], ident)[0, 0])

    fit = best
    for start in (
        [dihedral(target, t) for t in tors],
        [dihedral(best_conf.GetPositions(), t) for t in tors],
    ):
        if tors:
            res = minimize(
                rmsd_at,
                np.asarray(start),
                method="Powell",
                options={"xtol": 0.5, "ftol": 1e-4, "maxfev": 4000},
            )
            fit = min(fit, float(res.fun))
    rings_off = 0
    for ring in gen.GetRingInfo().AtomRings():
        if gen.GetAtomWithIdx(ring[0]).GetIsAromatic():
            continue
        idx = list(ring)
        shape = superposed_rmsd(
            best_conf.GetPositions()[idx][None], target[idx][None], np.arange(len(idx))[None]
        )
        rings_off += int(shape[0, 0] > RING_OFF)
    # is each experimental torsion (any symmetry-equivalent labelling) within COVER_DEG in
    # some sample? then recombining the samples' torsions could reach the pose
    covered = 0
    for t in tors:
        exp = [dihedral(ref_by_match[k], t) for k in range(len(matches))]
        got = [dihedral(x, t) for x in gen_xyz]
        covered += int(any(angle_diff(g, e) <= COVER_DEG for g in got for e in set(exp)))
    wrong = [i for i, d in enumerate(devs) if d > WRONG_DEG]
    worst = [int(np.argmax(devs))] if devs else []
    return {
        "covered": covered,
        "fit_torsions": fit,
        "rings_off": rings_off,
        "name": name,
        "n_rot": record.n_rot,
        "best": best,
        "n_torsions": len(tors),
        "n_wrong": len(wrong),
        "fix_worst": repaired(worst),
        "fix_wrong": repaired(wrong),
        "fix_all": repaired(list(range(len(tors)))),
    }


#: the rotatable-bond bins of these diagnostics (5-6, 7-9, 10+)
FLEXIBLE_BINS = [(lo, hi) for lo, hi in ROT_BINS if lo >= 5]


def collect(
    data: Path, per_bin: int, analyse_one: Callable[[MolRecord], dict]
) -> dict[tuple[int, int], list[dict]]:
    """``analyse_one`` of up to ``per_bin`` held-out CCD validation molecules per bin of
    :data:`FLEXIBLE_BINS`: the validation split without the 400 that pick checkpoints (the
    pool and order of ``decoder_bottleneck.py``), 4 to ``max_heavy_atoms`` heavy atoms. A
    molecule whose analysis raises ``ValueError`` / ``RuntimeError`` is reported and skipped."""
    preset = PRESETS["default"]
    val = [r for r in load_records(data) if r.split == "val"]
    chosen = set(checkpoint_selection(len(val), preset))  # the trainer's, left out
    pool = [r for i, r in enumerate(val) if i not in chosen]
    rows: dict[tuple[int, int], list[dict]] = {b: [] for b in FLEXIBLE_BINS}
    for i in np.random.default_rng(5).permutation(len(pool)):
        if all(len(v) >= per_bin for v in rows.values()):
            break
        rec = pool[i]
        try:
            probe = make_record(rec.name, rec.mol)
        except ValueError:
            continue
        b = next((b for b in FLEXIBLE_BINS if b[0] <= probe.n_rot <= b[1]), None)
        if b is None or len(rows[b]) >= per_bin:
            continue
        if not 4 <= probe.n_heavy <= preset.max_heavy_atoms:
            continue
        try:
            rows[b].append(analyse_one(rec))
        except (ValueError, RuntimeError) as exc:
            print(f"skipped {rec.name}: {exc}", file=sys.stderr)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("data_build/ccd"))
    ap.add_argument("--per-bin", type=int, default=40, help="molecules per bin 5-6, 7-9, 10+")
    ap.add_argument("-n", type=int, default=50)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    rows = collect(
        args.data, args.per_bin, lambda rec: analyse(rec.mol, rec.name, args.n, args.seed)
    )
    model = load_model()
    print("# Flexible molecules: wrong rotamers or small errors? (held-out CCD validation)\n")
    print(
        f"Weights sha256 `{model.manifest['sha256'][:12]}...` (epoch "
        f"{model.manifest['validation']['epoch']}); `rdconfvae.embed(mol, n={args.n}, "
        f"seed={args.seed})`; command: `python {' '.join(sys.argv)}`\n"
    )
    print(
        "Per molecule, the conformer closest to the experimental one; torsions of acyclic "
        f"single bonds; wrong rotamer: more than {WRONG_DEG:.0f} degrees off. Repairs set "
        "torsions of that conformer to the experimental values (bond lengths and angles "
        "kept). Medians, and shares below 1 A.\n"
    )
    print(
        "| rotatable bonds | molecules | best of n | < 1 A | torsions | wrong rotamers "
        "| misses (wrong rotamers) | worst set: < 1 A | wrong set: < 1 A | all set: median, "
        "< 1 A | torsions fitted: median, < 1 A | non-aromatic ring off | torsions in some "
        "sample | all in some sample |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for b, rs in rows.items():
        if not rs:
            continue

        def col(key: str, sub: list[dict] = rs) -> np.ndarray:
            return np.asarray([r[key] for r in sub], dtype=float)

        def below(key: str) -> str:
            return f"{100 * (col(key) < 1).mean():.0f} %"

        misses = [r for r in rs if r["best"] >= 1.0]
        miss_wrong = f"{len(misses)} ({np.median(col('n_wrong', misses)):.0f})" if misses else "0"
        print(
            f"| {rot_bin_label(*b)} | {len(rs)} | {np.median(col('best')):.2f} | {below('best')} | "
            f"{np.median(col('n_torsions')):.0f} | {np.median(col('n_wrong')):.0f} "
            f"(none: {100 * (col('n_wrong') == 0).mean():.0f} %) | {miss_wrong} | "
            f"{below('fix_worst')} | {below('fix_wrong')} | {np.median(col('fix_all')):.2f}, "
            f"{below('fix_all')} | {np.median(col('fit_torsions')):.2f}, {below('fit_torsions')} | "
            f"{int((col('rings_off') > 0).sum())} | "
            f"{100 * col('covered').sum() / max(col('n_torsions').sum(), 1):.0f} % | "
            f"{100 * (col('covered') == col('n_torsions')).mean():.0f} % |"
        )
    print(
        "\nPer molecule: rotatable bonds, best of n, wrong rotamers / torsions, RMSD after each "
        "repair, non-aromatic rings off:\n"
    )
    print(
        "| molecule | rot | best | wrong / torsions | worst set | wrong set | all set | fitted "
        "| rings off | covered |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for rs in rows.values():
        for r in sorted(rs, key=lambda r: r["n_rot"]):
            print(
                f"| {r['name']} | {r['n_rot']} | {r['best']:.2f} | {r['n_wrong']} / "
                f"{r['n_torsions']} | {r['fix_worst']:.2f} | {r['fix_wrong']:.2f} | "
                f"{r['fix_all']:.2f} | {r['fit_torsions']:.2f} | {r['rings_off']} | "
                f"{r['covered']} / {r['n_torsions']} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

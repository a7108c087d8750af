"""Conformer-generator benchmarks: bioactive poses, ensemble coverage, chemical validity.

Usage::

    python -m rdconfvae.bench platinum  --data PLATINUM.sdf.gz --methods etkdg,conforge -n 50
    python -m rdconfvae.bench ensembles --data dft_public.sdf.gz --methods etkdg,rdconfvae
    python -m rdconfvae.bench validity  --data PLATINUM.sdf.gz --methods etkdg,etkdg+mmff -n 10
    python -m rdconfvae.bench threads   --data PLATINUM.sdf.gz -n 50 --limit 40 --threads 2

Every method runs on the same molecules, interleaved per molecule, in one process, one
thread. Each molecule's graph is rebuilt without 3D (canonical isomeric SMILES of the
reference's heavy atoms, stereo perceived from its 3D coordinates, then ``Chem.AddHs``), so no
reference coordinate reaches a generator. CPU time is ``time.process_time`` around the
generator call (plus MMFF for ``+mmff``); RMSD evaluation is not timed.

Methods (``--methods``, comma-separated):

* ``etkdg``: ``EmbedMultipleConfs(mol, n, ETKDGv3)`` with ``randomSeed=--seed``, one thread.
* ``conforge``: CDPKit's CONFORGE (optional ``cdpkit``), the authors' default preset
  (``ConformerGeneratorSettings.DEFAULT`` = ``MEDIUM_SET_DIVERSE``: 15 kcal/mol energy window,
  0.5 A RMSD diversity threshold) with at most ``n`` output conformers; systematic sampling,
  except for molecules with a ring of 12 or more atoms, which get CONFORGE's AUTO mode (its
  stochastic macrocycle sampler). The exact settings go into the report.
* ``rdconfvae``: ``rdconfvae.embed(mol, n=n, seed=seed)`` (the default output: model
  conformers with the short MMFF polish).
* ``rdconfvae-raw``: the same with ``polishIters=0``: the model's conformers as decoded and
  solved, no force field at all.
* ``rdconfvae-mmff``: ``rdconfvae.embed(mol, n=n, seed=seed, mmff=True)``, the package's own
  refined path: the same MMFF as ``+mmff``, then conformers whose declared stereo MMFF changed
  are replaced by new samples (what users of ``mmff=True`` get; ``+mmff`` keeps them).
* ``<method>+mmff``: the method's conformers, then :func:`rdconfvae.refine.mmff_minimize`
  (MMFF94s, eps = 4r) for every generator alike; ``<method>+mmffgas`` the same in the gas
  phase (eps = 1), to compare the dielectrics. The base method's conformers of the same
  molecule are reused when the base method is also run (same seed, same coordinates) and its
  CPU time is added.

Tasks and outputs (in ``--out``, default ``benchmarks/results/<task>-<date>``): ``report.md``,
``results.json`` (per molecule and method) and PNG plots when matplotlib is installed.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import functools
import gzip
import importlib.metadata
import json
import logging
import math
import os
import platform
import shlex
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rdkit import Chem, RDLogger
from rdkit.Chem import rdDistGeom, rdMolDescriptors

from rdconfvae import metrics
from rdconfvae.refine import mmff_minimize

__all__ = [
    "Record",
    "TASKS",
    "BASE_METHODS",
    "ROT_BINS",
    "load_records",
    "select_records",
    "input_mol",
    "run_benchmark",
    "main",
]

log = logging.getLogger(__name__)

TASKS = ("platinum", "ensembles", "validity", "threads")
BASE_METHODS = ("rdconfvae", "rdconfvae-raw", "rdconfvae-mmff", "etkdg", "conforge")
DEFAULT_METHODS = "rdconfvae,rdconfvae+mmff,etkdg,etkdg+mmff,conforge"
#: Refinement suffixes: keyword arguments of :func:`rdconfvae.refine.mmff_minimize`.
REFINERS: dict[str, dict[str, Any]] = {
    "mmff": {},  # the package default: MMFF94s, distance-dependent dielectric eps = 4r
    "mmffgas": {"dielectric": "constant", "dielectric_constant": 1.0},
}
_SHARED = Path("..") / "shared" / "data"
DEFAULT_DATA = {
    "platinum": _SHARED / "platinum" / "platinum_public.sdf.gz",
    "ensembles": _SHARED / "dft_ensembles" / "dft_public.sdf.gz",
    "validity": _SHARED / "platinum" / "platinum_public.sdf.gz",
    "threads": _SHARED / "platinum" / "platinum_public.sdf.gz",
}
#: Default conformers per molecule (ensembles: None = twice the reference count).
DEFAULT_N = {"platinum": 50, "ensembles": None, "validity": 10, "threads": 50}
QUICK_LIMIT, QUICK_N = 30, 10
#: Rotatable-bond bins (inclusive bounds) of the stratified sample.
ROT_BINS = ((0, 2), (3, 4), (5, 6), (7, 9), (10, 10_000))
#: Seed of the stratified sample; fixed so that every run draws the same molecules.
SAMPLE_SEED = 0
#: Ring size from which CONFORGE runs in AUTO mode (its macrocycle handling).
MACROCYCLE_RING_SIZE = 12


def split_method(method: str) -> tuple[str, str | None]:
    """``"etkdg+mmff"`` -> ``("etkdg", "mmff")``; ``"etkdg"`` -> ``("etkdg", None)``."""
    base, _, refine = method.partition("+")
    return base, (refine or None)


# --------------------------------------------------------------------------- data


@dataclass
class Record:
    """One benchmark molecule: reference heavy-atom conformers and the rebuilt graph."""

    name: str
    ref: Chem.Mol  # hydrogen-free, one conformer per reference geometry
    smiles: str  # canonical isomeric, stereo from the (first) reference geometry
    n_heavy: int
    n_rot: int


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


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


def _make_record(name: str, mol: Chem.Mol) -> Record:
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
            records.append(_make_record(name, mol))
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


# --------------------------------------------------------------------------- methods


class MethodError(RuntimeError):
    """A generator produced no usable conformer; the message is the recorded reason."""


def _run_etkdg(mol: Chem.Mol, n: int, seed: int, timeout: float | None) -> str | None:
    params = rdDistGeom.ETKDGv3()
    params.randomSeed = int(seed)  # type: ignore[assignment]  # rdkit stubs
    params.numThreads = 1  # type: ignore[assignment]
    if timeout:
        params.timeout = int(math.ceil(timeout))  # type: ignore[assignment]
    ids = rdDistGeom.EmbedMultipleConfs(mol, int(n), params)
    if len(ids) == 0:
        raise MethodError("ETKDG embedding failed (0 conformers)")
    return None


class _Conforge:
    """CONFORGE, set up once per run as in CDPKit's ``gen_confs.py`` example."""

    def __init__(self, timeout: float | None) -> None:
        try:
            import CDPL
            import CDPL.Base
            import CDPL.Chem
            import CDPL.ConfGen
        except ImportError as exc:
            raise MethodError(
                "cdpkit is not installed (pip install 'rdconfvae[bench]' or cdpkit)"
            ) from exc
        self.base, self.chem, self.confgen = CDPL.Base, CDPL.Chem, CDPL.ConfGen
        try:
            self.version = importlib.metadata.version("cdpkit")
        except importlib.metadata.PackageNotFoundError:  # pragma: no cover
            self.version = str(getattr(CDPL, "VERSION", "?"))
        self.gen = CDPL.ConfGen.ConformerGenerator()
        self.gen.settings.assign(CDPL.ConfGen.ConformerGeneratorSettings.DEFAULT)
        if timeout:
            self.gen.settings.timeout = int(timeout * 1000)
        codes = CDPL.ConfGen.ReturnCode
        self.code_names = {getattr(codes, k): k for k in dir(codes) if k.isupper()}
        self.ok_codes = {codes.SUCCESS, codes.TOO_MUCH_SYMMETRY}

    def settings(self, n: int) -> dict[str, object]:
        s, cg = self.gen.settings, self.confgen

        def name(enum, value):
            return next((k for k in dir(enum) if k.isupper() and getattr(enum, k) == value), value)

        return {
            "cdpkit": self.version,
            "preset": "ConformerGeneratorSettings.DEFAULT (= MEDIUM_SET_DIVERSE)",
            "sampling": "SYSTEMATIC; AUTO for molecules with a ring of >= "
            f"{MACROCYCLE_RING_SIZE} atoms",
            "max_output_conformers": n,
            "energy_window_kcal": s.energyWindow,
            "min_rmsd_A": s.minRMSD,
            "timeout_s": s.timeout / 1000,
            "sample_tolerance_ranges": s.sampleAngleTolRanges,
            "enumerate_rings": s.enumRings,
            "nitrogen_enumeration": name(cg.NitrogenEnumerationMode, s.nitrogenEnumMode),
            "from_scratch": s.genCoordsFromScratch,
            "force_field_systematic": name(cg.ForceFieldType, s.forceFieldTypeSystematic),
            "force_field_stochastic": name(cg.ForceFieldType, s.forceFieldTypeStochastic),
            "strict_mmff_parameterization": s.strictForceFieldParam,
            "max_refinement_iterations": s.maxNumRefinementIterations,
            "max_sampled_conformers": s.maxNumSampledConformers,
            "sample_het_atom_hydrogens": s.sampleHetAtomHydrogens,
            "input": "MDL mol block of the rebuilt graph with explicit H and 2D coordinates "
            "(stereo from wedges), atom order kept",
        }

    def __call__(self, mol: Chem.Mol, n: int, seed: int, timeout: float | None) -> str | None:
        from rdkit.Chem import rdDepictor

        flat = Chem.Mol(mol)
        rdDepictor.Compute2DCoords(flat)
        block = Chem.MolToMolBlock(flat)
        cmol = self.chem.BasicMolecule()
        if not self.chem.MOLMoleculeReader(self.base.StringIOStream(block)).read(cmol):
            raise MethodError("CDPKit could not read the mol block")
        self.confgen.prepareForConformerGeneration(cmol)
        macro = any(len(r) >= MACROCYCLE_RING_SIZE for r in mol.GetRingInfo().AtomRings())
        modes = self.confgen.ConformerSamplingMode
        self.gen.settings.samplingMode = modes.AUTO if macro else modes.SYSTEMATIC
        self.gen.settings.maxNumOutputConformers = int(n)
        status = self.gen.generate(cmol)
        if status not in self.ok_codes:
            raise MethodError(f"CONFORGE: {self.code_names.get(status, status)}")
        n_atoms = mol.GetNumAtoms()
        if cmol.numAtoms != n_atoms or any(
            self.chem.getType(cmol.getAtom(i)) != mol.GetAtomWithIdx(i).GetAtomicNum()
            for i in range(n_atoms)
        ):
            raise MethodError("CONFORGE: atom order differs from the input")
        for i in range(self.gen.getNumConformers()):
            xyz = np.asarray(self.gen.getConformer(i).toArray(False), dtype=np.float64)
            conf = Chem.Conformer(n_atoms)
            conf.SetPositions(xyz[:n_atoms])
            conf.Set3D(True)
            mol.AddConformer(conf, assignId=True)
        if mol.GetNumConformers() == 0:
            raise MethodError("CONFORGE: 0 conformers")
        if status != self.confgen.ReturnCode.SUCCESS:
            return f"CONFORGE: {self.code_names.get(status, status)}"
        return None


def _run_rdconfvae(
    mol: Chem.Mol,
    n: int,
    seed: int,
    timeout: float | None,
    mmff: bool = False,
    polish: int | None = None,
) -> str | None:
    """``polish``: ``polishIters`` (None: the package default)."""
    try:
        from rdconfvae import EmbedParameters, embed
    except ImportError as exc:
        raise MethodError(f"rdconfvae.embed is not available: {exc}") from exc
    kwargs: dict[str, Any] = {"n": int(n), "seed": int(seed), "mmff": mmff}
    if polish is not None:
        kwargs["params"] = EmbedParameters(polishIters=int(polish))
    if timeout:
        kwargs["timeout"] = float(timeout)
    ids = embed(mol, **kwargs)
    if len(ids) == 0:
        raise MethodError("rdconfvae.embed returned no conformer")
    return None


@dataclass
class MethodRun:
    """Outcome of one method on one molecule."""

    mol: Chem.Mol | None
    cpu_s: float
    n_confs: int
    error: str | None = None
    note: str | None = None
    mmff_not_converged: int | None = None


def _parse_methods(text: str) -> list[str]:
    methods = [m.strip() for m in text.split(",") if m.strip()]
    if not methods:
        raise ValueError("no method given")
    for m in methods:
        base, refine = split_method(m)
        if base not in BASE_METHODS or (refine is not None and refine not in REFINERS):
            raise ValueError(
                f"unknown method {m!r}; choose from {', '.join(BASE_METHODS)} "
                f"(optionally with +{' or +'.join(REFINERS)})"
            )
    if len(set(methods)) != len(methods):
        raise ValueError("a method is listed twice")
    return methods


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:200] if not isinstance(exc, MethodError) else text


class _Runner:
    """Runs the requested methods on one molecule, reusing base conformers for +mmff."""

    def __init__(self, methods: Sequence[str], timeout: float | None) -> None:
        self.methods = list(methods)
        self.timeout = timeout
        self.generators: dict[str, Callable[..., str | None]] = {}
        self.setup_errors: dict[str, str] = {}
        self.conforge: _Conforge | None = None
        for base in dict.fromkeys(split_method(m)[0] for m in methods):
            if base == "etkdg":
                self.generators[base] = _run_etkdg
            elif base == "rdconfvae":
                self.generators[base] = _run_rdconfvae
            elif base == "rdconfvae-mmff":
                self.generators[base] = functools.partial(_run_rdconfvae, mmff=True)
            elif base == "rdconfvae-raw":
                self.generators[base] = functools.partial(_run_rdconfvae, polish=0)
            elif base == "conforge":
                try:
                    self.conforge = _Conforge(timeout)
                    self.generators[base] = self.conforge
                except MethodError as exc:
                    self.setup_errors[base] = str(exc)

    def warm_up(self) -> None:
        """One untimed call per generator (loads libraries, model weights, caches)."""
        mol = Chem.AddHs(Chem.MolFromSmiles("CC(=O)Nc1ccc(O)cc1"))
        for base, gen in self.generators.items():
            try:
                gen(Chem.Mol(mol), 2, 1, self.timeout)
            except Exception as exc:  # noqa: BLE001 - reported per molecule later
                log.warning("warm-up of %s failed: %s", base, _short(exc))

    def _base(self, base: str, mol: Chem.Mol, n: int, seed: int) -> MethodRun:
        if base in self.setup_errors:
            return MethodRun(None, 0.0, 0, error=self.setup_errors[base])
        work = Chem.Mol(mol)
        t0 = time.process_time()
        try:
            note = self.generators[base](work, n, seed, self.timeout)
        except Exception as exc:  # noqa: BLE001 - a generator failure is a result
            return MethodRun(None, time.process_time() - t0, 0, error=_short(exc))
        cpu = time.process_time() - t0
        return MethodRun(work, cpu, work.GetNumConformers(), note=note)

    def run(self, mol: Chem.Mol, n: int, seed: int) -> dict[str, MethodRun]:
        out: dict[str, MethodRun] = {}
        bases: dict[str, MethodRun] = {}
        for method in self.methods:
            base, refine = split_method(method)
            if base not in bases:
                bases[base] = self._base(base, mol, n, seed)
            run = bases[base]
            if refine is None:
                out[method] = run
                continue
            if run.mol is None:
                out[method] = MethodRun(None, run.cpu_s, 0, error=run.error)
                continue
            work = Chem.Mol(run.mol)
            t0 = time.process_time()
            try:
                res = mmff_minimize(work, **REFINERS[refine])
            except Exception as exc:  # noqa: BLE001
                out[method] = MethodRun(
                    None, run.cpu_s + time.process_time() - t0, 0, error=f"MMFF: {_short(exc)}"
                )
                continue
            cpu = run.cpu_s + time.process_time() - t0
            if res is None:
                out[method] = MethodRun(
                    work,
                    cpu,
                    work.GetNumConformers(),
                    note="MMFF could not type the molecule: conformers left unrefined",
                )
            else:
                out[method] = MethodRun(
                    work,
                    cpu,
                    work.GetNumConformers(),
                    note=run.note,
                    mmff_not_converged=sum(not r.converged for r in res),
                )
        return out


# --------------------------------------------------------------------------- evaluation


def _evaluate(task: str, run: MethodRun, record: Record, args: argparse.Namespace) -> dict:
    if run.mol is None:
        return {}
    if task == "platinum":
        return {"min_rmsd": metrics.min_rmsd_to_pose(run.mol, record.ref)}
    if task == "ensembles":
        res = metrics.ensemble_metrics(run.mol, record.ref, delta=args.delta, strict=args.strict)
        return {k: res[k] for k in ("cov_r", "mat_r", "cov_p", "mat_p")}
    checks = metrics.posebusters_checks(run.mol, num_threads=getattr(args, "eval_threads", 1))
    names = list(checks[0]["checks"]) if checks else []
    return {
        "n_checked": len(checks),
        "n_pass": sum(c["pass_all"] for c in checks),
        "n_stereo": sum(c["stereo"] for c in checks),
        "n_pass_and_stereo": sum(c["pass_all"] and c["stereo"] for c in checks),
        "n_inchi_differs": sum(not c["inchi_matches_input"] for c in checks),
        "per_check_pass": {k: sum(c["checks"][k] for c in checks) for k in names},
    }


def run_benchmark(
    task: str,
    records: Sequence[Record],
    methods: Sequence[str],
    args: argparse.Namespace,
    progress: bool = True,
) -> tuple[list[dict], dict]:
    """Run every method on every record; returns per-molecule rows and run metadata."""
    runner = _Runner(methods, args.timeout)
    runner.warm_up()
    refs_before = metrics._reference_energy.cache_info().misses if task == "validity" else 0
    rows: list[dict] = []
    iterator = records
    bar = None
    if progress:
        try:
            from tqdm import tqdm

            bar = tqdm(records, desc=task, unit="mol", file=sys.stderr)
            iterator = bar
        except ImportError:  # pragma: no cover
            pass
    for rec in iterator:
        n = args.n if args.n is not None else 2 * rec.ref.GetNumConformers()
        runs = runner.run(input_mol(rec), n, args.seed)
        row: dict[str, Any] = {
            "name": rec.name,
            "smiles": rec.smiles,
            "n_heavy": rec.n_heavy,
            "n_rot": rec.n_rot,
            "n_ref": rec.ref.GetNumConformers(),
            "n_requested": n,
            "methods": {},
        }
        for method, run in runs.items():
            entry: dict[str, Any] = {
                "ok": run.mol is not None,
                "n_confs": run.n_confs,
                "cpu_s": run.cpu_s,
                "cpu_per_conf_s": run.cpu_s / run.n_confs if run.n_confs else None,
                "error": run.error,
                "note": run.note,
            }
            if run.mmff_not_converged is not None:
                entry["mmff_not_converged"] = run.mmff_not_converged
            t0 = time.process_time()
            try:
                entry.update(_evaluate(task, run, rec, args))
            except ValueError as exc:
                entry.update(ok=False, error=f"evaluation: {_short(exc)}")
            entry["eval_cpu_s"] = time.process_time() - t0
            row["methods"][method] = entry
        rows.append(row)
    if bar is not None:
        bar.close()
    meta: dict[str, Any] = {
        "conforge_settings": runner.conforge.settings(args.n or 0) if runner.conforge else None
    }
    if task == "validity":
        meta["energy_references"] = metrics._reference_energy.cache_info().misses - refs_before
    if meta["conforge_settings"] is not None and args.n is None:
        meta["conforge_settings"]["max_output_conformers"] = "2 x reference count"
    return rows, meta


# --------------------------------------------------------------------------- summary


def _median(values: Sequence[float]) -> float | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.median(vals)) if vals else None


def _mean(values: Sequence[float]) -> float | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def summarize(task: str, rows: Sequence[dict], methods: Sequence[str]) -> dict:
    """Per-method aggregates: failures, CPU time, and the task's quality metrics."""
    common = [r for r in rows if all(r["methods"][m]["ok"] for m in methods)]
    out: dict[str, dict] = {}
    for m in methods:
        entries = [r["methods"][m] for r in rows]
        ok = [e for e in entries if e["ok"]]
        reasons = Counter(e["error"] for e in entries if not e["ok"])
        confs = sum(e["n_confs"] for e in ok)
        cpu_ok = sum(e["cpu_s"] for e in ok)
        s = {
            "n_mols": len(entries),
            "n_ok": len(ok),
            "n_failed": len(entries) - len(ok),
            "failures": dict(reasons.most_common()),
            "failed_names": [r["name"] for r in rows if not r["methods"][m]["ok"]],
            "notes": dict(Counter(e["note"] for e in entries if e.get("note")).most_common()),
            "mean_confs": confs / len(ok) if ok else None,
            "cpu_total_s": sum(e["cpu_s"] for e in entries),
            "cpu_per_mol_median_s": _median([e["cpu_s"] for e in ok]),
            "cpu_per_mol_mean_s": _mean([e["cpu_s"] for e in ok]),
            "cpu_per_conf_s": cpu_ok / confs if confs else None,
            "cpu_per_conf_median_s": _median([e["cpu_per_conf_s"] for e in ok]),
            "eval_cpu_s": sum(e.get("eval_cpu_s", 0.0) for e in entries),
        }
        if "etkdg" in methods:
            pair = [r for r in rows if r["methods"][m]["ok"] and r["methods"]["etkdg"]["ok"]]
            mine = sum(r["methods"][m]["cpu_s"] for r in pair)
            base = sum(r["methods"]["etkdg"]["cpu_s"] for r in pair)
            s["cpu_vs_etkdg"] = mine / base if pair and base > 0 else None
            s["cpu_vs_etkdg_n"] = len(pair)
        if any("mmff_not_converged" in e for e in ok):
            s["mmff_not_converged"] = sum(e.get("mmff_not_converged", 0) for e in ok)
        if task == "platinum":
            s["all"] = metrics.pose_summary([e.get("min_rmsd") for e in entries])
            s["common"] = metrics.pose_summary([r["methods"][m]["min_rmsd"] for r in common])
        elif task == "ensembles":
            for key in ("cov_r", "mat_r", "cov_p", "mat_p"):
                vals = [e.get(key) for e in ok]
                s[f"{key}_mean"], s[f"{key}_median"] = _mean(vals), _median(vals)
            # failures count as zero coverage
            for key in ("cov_r", "cov_p"):
                s[f"{key}_mean_all"] = float(np.mean([e.get(key, 0.0) or 0.0 for e in entries]))
            for key in ("cov_r", "mat_r", "cov_p", "mat_p"):
                vals = [r["methods"][m][key] for r in common]
                s[f"{key}_mean_common"], s[f"{key}_median_common"] = _mean(vals), _median(vals)
        else:
            n_checked = sum(e.get("n_checked", 0) for e in ok)
            s["n_checked"] = n_checked
            for key in ("n_pass", "n_stereo", "n_pass_and_stereo"):
                s[key.replace("n_", "share_", 1)] = (
                    sum(e.get(key, 0) for e in ok) / n_checked if n_checked else None
                )
            per: Counter = Counter()
            for e in ok:
                per.update(e.get("per_check_pass", {}))
            s["per_check_share"] = {k: v / n_checked for k, v in per.items()} if n_checked else {}
            s["n_inchi_differs"] = sum(e.get("n_inchi_differs", 0) for e in ok)
            s["mols_all_pass"] = sum(
                e.get("n_pass", 0) == e.get("n_checked", -1) and e.get("n_checked", 0) > 0
                for e in ok
            )
        out[m] = s
    return {"methods": out, "n_common": len(common)}


# --------------------------------------------------------------------------- report


def _f(value: float | None, fmt: str = ".3f") -> str:
    return "–" if value is None or not math.isfinite(value) else format(value, fmt)


def _pct(value: float | None) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{100 * value:.1f} %"


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{1000 * value:.1f}"


def _ratio(a: float | None, b: float | None) -> str:
    return "–" if not a or not b else f"{a / b:.2f}x"


def _x(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}x"


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("rdkit", "numpy", "cdpkit", "posebusters", "torch", "rdconfvae"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def write_report(path: Path, task: str, summary: dict, info: dict) -> None:
    """Markdown report: command, settings, quality table, time table, failures."""
    methods = list(summary["methods"])
    sm = summary["methods"]
    ref = "etkdg" if "etkdg" in sm else None
    lines = [
        f"# rdconfvae benchmark: {task}",
        "",
        "Command:",
        "",
        "```",
        info["command"],
        "```",
        "",
        "## Settings",
        "",
        f"- date: {info['date']}; machine: {info['cpu']}, {info['n_cpus']} logical CPUs "
        "(shared; CPU time, not wall time, is reported)",
        f"- data: `{info['data']}` ({info['n_records']} molecules read, "
        f"{info['n_selected']} benchmarked, sample `{info['sample']}`"
        + (
            f", stratified by rotatable bonds {list(ROT_BINS)} with seed {SAMPLE_SEED}"
            if info["sample"] == "stratified" and info["limit"]
            else ""
        )
        + ")",
        f"- conformers requested per molecule: {info['n_desc']}; seed {info['seed']}; "
        f"timeout {info['timeout']} s per molecule and method",
        "- input: canonical isomeric SMILES of the reference heavy atoms (stereo from 3D), "
        "`Chem.AddHs`; no reference coordinates reach a generator",
        "- CPU time: `time.process_time()` around each generator call, one thread, methods "
        "interleaved per molecule after one untimed warm-up call each; `+mmff` = base "
        "conformers (reused from the same run) + `rdconfvae.refine.mmff_minimize` "
        "(MMFF94s, distance-dependent dielectric 4r, up to 5000 iterations; `+mmffgas`: "
        "constant dielectric 1, gas phase), both timed",
        "- RMSD: heavy atoms, symmetry-aware, optimal superposition without reflection "
        "(`rdMolAlign.GetBestRMS` semantics, `rdconfvae.metrics`)",
        f"- versions: {', '.join(f'{k} {v}' for k, v in info['versions'].items())}",
        f"- wall time of the whole run: {_f(info.get('wall_s'), '.0f')} s (evaluation CPU: "
        + ", ".join(f"{m} {sm[m].get('eval_cpu_s', 0.0):.0f} s" for m in methods)
        + ")",
    ]
    if info.get("conforge_settings"):
        cs = info["conforge_settings"]
        lines.append("- CONFORGE: " + ", ".join(f"{k}={v}" for k, v in cs.items()))
    lines += ["", "## Results", ""]
    if task == "platinum":
        lines += [
            "Minimum heavy-atom RMSD of each ensemble to the crystal pose, over all "
            "benchmarked molecules (a failed molecule counts as a miss).",
            "",
            "| method | ok / total | median (A) | mean (A) | < 0.5 A | < 1.0 A | < 1.5 A "
            "| < 2.0 A | mean confs |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for m in methods:
            s, a = sm[m], sm[m]["all"]
            lines.append(
                f"| {m} | {s['n_ok']} / {s['n_mols']} | {_f(a['median'])} | {_f(a['mean'])} | "
                f"{_pct(a['below_0.5'])} | {_pct(a['below_1.0'])} | {_pct(a['below_1.5'])} | "
                f"{_pct(a['below_2.0'])} | {_f(s['mean_confs'], '.1f')} |"
            )
        if 0 < summary["n_common"] != sm[methods[0]]["n_mols"]:
            lines += [
                "",
                f"On the {summary['n_common']} molecules where every method succeeded:",
                "",
                "| method | median (A) | < 1.0 A | < 2.0 A |",
                "|---|---|---|---|",
            ]
            for m in methods:
                c = sm[m]["common"]
                lines.append(
                    f"| {m} | {_f(c['median'])} | {_pct(c['below_1.0'])} | {_pct(c['below_2.0'])} |"
                )
    elif task == "ensembles":
        lines += [
            f"COV / MAT against the reference ensembles, delta = {info['delta']} A "
            f"({'strict <' if info['strict'] else '<='}); mean (median) over molecules with "
            "a generated ensemble; COV-R (all) counts failures as 0.",
            "",
            "| method | ok / total | COV-R | COV-R (all) | MAT-R (A) | COV-P | MAT-P (A) "
            "| mean confs |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for m in methods:
            s = sm[m]
            lines.append(
                f"| {m} | {s['n_ok']} / {s['n_mols']} | {_pct(s['cov_r_mean'])} "
                f"({_pct(s['cov_r_median'])}) | {_pct(s['cov_r_mean_all'])} | "
                f"{_f(s['mat_r_mean'])} ({_f(s['mat_r_median'])}) | {_pct(s['cov_p_mean'])} "
                f"({_pct(s['cov_p_median'])}) | {_f(s['mat_p_mean'])} ({_f(s['mat_p_median'])}) "
                f"| {_f(s['mean_confs'], '.1f')} |"
            )
    else:
        lines += [
            "Share of generated conformers passing PoseBusters' molecule checks (its `mol` "
            "config and thresholds; `rdconfvae.metrics.posebusters_checks`, same pass/fail "
            'as `PoseBusters(config="mol").bust` per conformer, with the energy-ratio '
            "reference ensemble of the input's InChI computed once per molecule: "
            f"{info.get('energy_references')} ensembles in this run, "
            f"{info.get('eval_threads')} thread(s)) and keeping the input's stereo (RDKit, "
            "perceived from 3D).",
            "",
            "| method | ok / total | conformers | PB pass all | stereo kept | both "
            "| molecules all-pass | InChI differs |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for m in methods:
            s = sm[m]
            lines.append(
                f"| {m} | {s['n_ok']} / {s['n_mols']} | {s['n_checked']} | "
                f"{_pct(s['share_pass'])} | {_pct(s['share_stereo'])} | "
                f"{_pct(s['share_pass_and_stereo'])} | {s['mols_all_pass']} | "
                f"{s.get('n_inchi_differs', 0)} |"
            )
        lines += [
            "",
            "InChI differs: conformers whose InChI (stereo perceived from 3D by InChI) is "
            "not the input's; their energy ratio uses the input's reference ensemble, where "
            "PoseBusters would embed that other stereoisomer.",
        ]
        checks = sorted({k for m in methods for k in sm[m]["per_check_share"]})
        if checks:
            lines += [
                "",
                "Per check (share of conformers passing):",
                "",
                "| check | " + " | ".join(methods) + " |",
                "|---|" + "---|" * len(methods),
            ]
            for k in checks:
                lines.append(
                    f"| {k} | "
                    + " | ".join(_pct(sm[m]["per_check_share"].get(k)) for m in methods)
                    + " |"
                )
    lines += [
        "",
        "## CPU time",
        "",
        "Per conformer = total CPU of successful molecules / their conformers (median: of "
        "the per-molecule values). vs ETKDG (per conf) divides the per-conformer figures; "
        "vs ETKDG (total) divides total CPU on the molecules where both the method and "
        "ETKDGv3 succeeded.",
        "",
        "| method | ms / conformer | median ms / conformer | median ms / molecule "
        "| mean ms / molecule | total s | vs ETKDG (per conf) | vs ETKDG (total) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in methods:
        s = sm[m]
        r = sm[ref] if ref else None
        lines.append(
            f"| {m} | {_ms(s['cpu_per_conf_s'])} | {_ms(s['cpu_per_conf_median_s'])} | "
            f"{_ms(s['cpu_per_mol_median_s'])} | {_ms(s['cpu_per_mol_mean_s'])} | "
            f"{s['cpu_total_s']:.1f} | "
            f"{_ratio(s['cpu_per_conf_s'], r['cpu_per_conf_s']) if r else '–'} | "
            f"{_x(s.get('cpu_vs_etkdg'))} |"
        )
    lines += ["", "## Failures", ""]
    any_fail = False
    for m in methods:
        s = sm[m]
        if s["n_failed"]:
            any_fail = True
            names = ", ".join(s["failed_names"][:10]) + (" ..." if s["n_failed"] > 10 else "")
            lines.append(f"- **{m}**: {s['n_failed']} of {s['n_mols']} ({names})")
            for reason, count in s["failures"].items():
                lines.append(f"  - {count} x {reason}")
        for note, count in s["notes"].items():
            lines.append(f"- {m}: note, {count} x {note}")
        if s.get("mmff_not_converged"):
            lines.append(f"- {m}: {s['mmff_not_converged']} conformers not converged by MMFF")
    if not any_fail:
        lines.append("- none")
    if info.get("plots"):
        lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in info["plots"]]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_plots(out: Path, task: str, rows: Sequence[dict], methods: Sequence[str]) -> list[str]:
    """PNG plots; returns the file names (empty when matplotlib is missing)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: no plots (pip install matplotlib)")
        return []
    files = []
    key = {"platinum": "min_rmsd", "ensembles": "mat_r"}.get(task)
    label = {"min_rmsd": "min heavy-atom RMSD to pose (A)", "mat_r": "MAT-R (A)"}.get(key or "")
    if key and label:
        fig, ax = plt.subplots(figsize=(6, 4.5))
        for m in methods:
            vals = np.sort(
                [r["methods"][m].get(key) for r in rows if r["methods"][m].get(key) is not None]
            )
            y = np.arange(1, len(vals) + 1) / max(len(rows), 1)  # failures never reach 1
            ax.step(
                np.concatenate([[0.0], vals]), np.concatenate([[0.0], y]), where="post", label=m
            )
        ax.set_xlim(0, 3)
        ax.set_ylim(0, 1)
        ax.set_xlabel(label)
        ax.set_ylabel("share of molecules")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        name = f"cdf_{key}.png"
        fig.savefig(out / name, dpi=120)
        plt.close(fig)
        files.append(name)

        fig, ax = plt.subplots(figsize=(6, 4.5))
        for m in methods:
            by: dict[int, list[float]] = {}
            for r in rows:
                v = r["methods"][m].get(key)
                if v is not None:
                    by.setdefault(min(r["n_rot"], 15), []).append(v)
            xs = sorted(by)
            ax.plot(xs, [np.median(by[x]) for x in xs], marker="o", label=m)
        ax.set_xlabel("rotatable bonds (15 = 15+)")
        ax.set_ylabel(f"median {label}")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        name = f"{key}_vs_rotbonds.png"
        fig.savefig(out / name, dpi=120)
        plt.close(fig)
        files.append(name)
    if task == "validity":
        fig, ax = plt.subplots(figsize=(6, 4))
        shares = []
        for m in methods:
            n = sum(r["methods"][m].get("n_checked", 0) for r in rows)
            p = sum(r["methods"][m].get("n_pass_and_stereo", 0) for r in rows)
            shares.append(100 * p / n if n else 0)
        ax.bar(methods, shares)
        ax.set_ylabel("% conformers passing PoseBusters + stereo")
        ax.set_ylim(0, 100)
        fig.tight_layout()
        fig.savefig(out / "validity_pass.png", dpi=120)
        plt.close(fig)
        files.append("validity_pass.png")
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for m in methods:
        pts = [
            (r["n_heavy"], 1000 * r["methods"][m]["cpu_per_conf_s"])
            for r in rows
            if r["methods"][m].get("cpu_per_conf_s")
        ]
        if pts:
            px, py = zip(*pts, strict=True)
            ax.scatter(px, py, s=10, alpha=0.6, label=m)
    ax.set_yscale("log")
    ax.set_xlabel("heavy atoms")
    ax.set_ylabel("CPU ms per conformer")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "time_per_conf_vs_heavy_atoms.png", dpi=120)
    plt.close(fig)
    files.append("time_per_conf_vs_heavy_atoms.png")
    return files


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


# --------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m rdconfvae.bench",
        description="Benchmark conformer generators side by side (poses, ensembles, validity).",
    )
    p.add_argument("task", choices=TASKS)
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        help="SDF(.gz) with reference conformers (default: ../shared/data/...)",
    )
    p.add_argument(
        "--methods",
        default=DEFAULT_METHODS,
        help=f"comma-separated, from {', '.join(BASE_METHODS)}, each optionally "
        f"+mmff (eps = 4r) or +mmffgas (eps = 1) (default: {DEFAULT_METHODS})",
    )
    p.add_argument(
        "-n",
        type=int,
        default=None,
        help="conformers per molecule (default: 50 platinum, 10 validity, "
        "2 x the reference count for ensembles)",
    )
    p.add_argument("--limit", type=int, default=None, help="at most this many molecules")
    p.add_argument(
        "--sample",
        choices=("first", "stratified"),
        default="first",
        help="which molecules --limit keeps (default: first in file order)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_LIMIT} molecules (stratified unless --sample given), "
        f"n={QUICK_N} (ensembles keep 2 x reference)",
    )
    p.add_argument("--seed", type=int, default=42, help="random seed of the generators")
    p.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="per molecule and generator, seconds (0 = none; default 300)",
    )
    p.add_argument("--delta", type=float, default=1.25, help="COV threshold, A (ensembles)")
    p.add_argument(
        "--strict",
        action="store_true",
        help="COV with < delta instead of <= (torsional diffusion: --delta 0.75)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: benchmarks/results/<task>-<date>)",
    )
    p.add_argument(
        "--eval-threads",
        type=int,
        default=1,
        help="validity: threads of PoseBusters' energy-ratio reference ensembles "
        "(0 = all cores; the results do not depend on it; default 1)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--threads", type=int, default=2, help="threads task: thread count compared with 1"
    )
    return p


def run_threads(data: Path, out: Path, args: argparse.Namespace, argv: Sequence[str]) -> int:
    """``threads`` task: wall time of ``rdconfvae.embed`` with 1 and ``--threads`` threads on
    the same molecules and seed, interleaved, plus a check that the coordinates are identical."""
    import rdconfvae

    records = select_records(load_records(data, "platinum"), args.limit, args.sample)
    counts = (1, args.threads)
    rdconfvae.embed(input_mol(records[0]), n=2, seed=args.seed)  # load the model untimed
    rows: list[dict[str, Any]] = []
    for rec in records:
        row = {"name": rec.name, "n_heavy": rec.n_heavy}
        coords = {}
        for k in counts:
            mol = input_mol(rec)
            t0 = time.perf_counter()
            try:
                rdconfvae.embed(mol, n=args.n, seed=args.seed, num_threads=k)
            except Exception as exc:  # a failure is a row, not the end of the run
                row[f"error_{k}"] = _short(exc)
                continue
            row[f"wall_{k}_s"] = time.perf_counter() - t0
            coords[k] = np.stack([c.GetPositions() for c in mol.GetConformers()])
        if len(coords) == 2:
            row["identical"] = bool(np.array_equal(coords[1], coords[args.threads]))
        rows.append(row)
    ok = [r for r in rows if "identical" in r]
    t1 = sum(r["wall_1_s"] for r in ok)
    tk = sum(r[f"wall_{args.threads}_s"] for r in ok)
    speedups = [r["wall_1_s"] / r[f"wall_{args.threads}_s"] for r in ok]
    summary = {
        "molecules": len(rows),
        "ok": len(ok),
        "identical_coordinates": sum(r["identical"] for r in ok),
        "total_wall_1_s": t1,
        f"total_wall_{args.threads}_s": tk,
        "speedup_total": t1 / tk if tk else None,
        "speedup_median": _median(speedups),
        "ms_per_conf_1_median": _median([1e3 * r["wall_1_s"] / args.n for r in ok]),
        f"ms_per_conf_{args.threads}_median": _median(
            [1e3 * r[f"wall_{args.threads}_s"] / args.n for r in ok]
        ),
    }
    command = "python -m rdconfvae.bench " + shlex.join(argv)
    lines = [
        f"# rdconfvae.embed: 1 thread vs {args.threads} threads",
        "",
        f"Command: `{command}`  ",
        f"Machine: {_cpu_model()}, {os.cpu_count()} CPUs; n = {args.n}, seed {args.seed}, "
        f"{len(rows)} Platinum molecules (graph only), wall time per call, interleaved.",
        "",
        "| quantity | value |",
        "|---|---|",
    ]
    lines += [
        f"| {k} | {v:.3f} |" if isinstance(v, float) else f"| {k} | {v} |"
        for k, v in summary.items()
    ]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    with open(out / "results.json", "w", encoding="utf-8") as fh:
        json.dump(
            _jsonable({"command": command, "summary": summary, "molecules": rows}), fh, indent=1
        )
    print("\n".join(lines))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    RDLogger.DisableLog("rdApp.*")  # type: ignore[attr-defined]  # absent from rdkit stubs
    logging.getLogger("rdconfvae.refine").setLevel(logging.ERROR)  # counted in the report
    logging.getLogger("posebusters").setLevel(logging.ERROR)
    try:
        methods = _parse_methods(args.methods)
    except ValueError as exc:
        parser.error(str(exc))
    if args.timeout is not None and args.timeout <= 0:
        args.timeout = None
    sample_given = "--sample" in argv
    if args.quick:
        args.limit = QUICK_LIMIT if args.limit is None else args.limit
        if args.n is None and args.task != "ensembles":
            args.n = QUICK_N
        if not sample_given:
            args.sample = "stratified"
    if args.n is None:
        args.n = DEFAULT_N[args.task]
    if args.n is not None and args.n < 1:
        parser.error("-n must be >= 1")
    if args.task == "validity":
        try:
            metrics._posebusters()
        except ImportError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    data = args.data or DEFAULT_DATA[args.task]
    if not Path(data).exists():
        print(f"error: data file not found: {data} (pass --data)", file=sys.stderr)
        return 2
    out = args.out or Path("benchmarks") / "results" / f"{args.task}-{_dt.date.today():%Y-%m-%d}"
    out.mkdir(parents=True, exist_ok=True)

    if args.task == "threads":
        return run_threads(data, out, args, argv)
    t_start = time.perf_counter()
    records = load_records(data, args.task)
    selected = select_records(records, args.limit, args.sample)
    log.info("%d of %d molecules, methods %s", len(selected), len(records), ", ".join(methods))
    rows, meta = run_benchmark(args.task, selected, methods, args, progress=not args.no_progress)
    summary = summarize(args.task, rows, methods)
    info = {
        "command": "python -m rdconfvae.bench " + shlex.join(argv),
        "task": args.task,
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "cpu": _cpu_model(),
        "n_cpus": os.cpu_count(),
        "data": str(data),
        "n_records": len(records),
        "n_selected": len(selected),
        "sample": args.sample,
        "limit": args.limit,
        "n": args.n,
        "n_desc": str(args.n) if args.n is not None else "2 x the reference count",
        "seed": args.seed,
        "timeout": args.timeout,
        "delta": args.delta,
        "strict": args.strict,
        "methods": methods,
        "versions": _versions(),
        "conforge_settings": meta["conforge_settings"],
        "energy_references": meta.get("energy_references"),
        "eval_threads": args.eval_threads,
        "wall_s": None,
    }
    info["plots"] = write_plots(out, args.task, rows, methods)
    info["wall_s"] = time.perf_counter() - t_start
    write_report(out / "report.md", args.task, summary, info)
    with open(out / "results.json", "w", encoding="utf-8") as fh:
        json.dump(_jsonable({"info": info, "summary": summary, "molecules": rows}), fh, indent=1)
    _print_summary(args.task, summary, out)
    return 0


def _print_summary(task: str, summary: dict, out: Path) -> None:
    for m, s in summary["methods"].items():
        if task == "platinum":
            a = s["all"]
            q = (
                f"median {_f(a['median'])} A, <1 A {_pct(a['below_1.0'])}, "
                f"<2 A {_pct(a['below_2.0'])}"
            )
        elif task == "ensembles":
            q = (
                f"COV-R {_pct(s['cov_r_mean'])}, MAT-R {_f(s['mat_r_mean'])} A, "
                f"COV-P {_pct(s['cov_p_mean'])}, MAT-P {_f(s['mat_p_mean'])} A"
            )
        else:
            q = f"PB pass {_pct(s['share_pass'])}, stereo {_pct(s['share_stereo'])}"
        print(
            f"{m:16s} ok {s['n_ok']}/{s['n_mols']}  {q}  "
            f"{_ms(s['cpu_per_conf_s'])} ms/conf, {_ms(s['cpu_per_mol_median_s'])} ms/mol"
        )
    print(f"report: {out / 'report.md'}")


if __name__ == "__main__":
    raise SystemExit(main())

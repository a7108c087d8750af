"""Embedding orchestration for one molecule: every stage in order, the caller's molecule
touched only at the end.

    copy -> sanitize -> heavy-atom graph -> fragments (featurized)
         -> sampling (model, solver, stereo repair; :mod:`rdconfvae.embedding.sampling`)
         -> fragments laid out -> planar groups, hydrogens (:mod:`rdconfvae.geometry.conformers`)
         -> MMFF94s: a short polish (``polishIters``, default) or, with ``mmff=True``,
            a minimisation to convergence; conformers whose declared stereo it changed
            are restored (polish) or resampled (``mmff``)
         -> optional symmetry-aware RMSD pruning -> :func:`rdconfvae.embedding.attach.attach`

Hydrogens: the model places heavy atoms. When the caller's molecule has explicit
hydrogens they are positioned from the heavy-atom frame (RDKit's
``AddHs(addCoords=True)`` geometry, then the polish or MMFF). Without explicit
hydrogens, no atom is added to the caller's molecule: its conformers hold the heavy
atoms; hydrogens are added to a private copy for the polish or the minimisation and
dropped again. Molecules MMFF cannot type get exactly the raw output (the polish is
skipped before sampling).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from rdkit import Chem

from rdconfvae.deadline import Deadline
from rdconfvae.embedding import workers
from rdconfvae.embedding.attach import attach
from rdconfvae.embedding.constraints import prepare_anchor
from rdconfvae.embedding.fallback import caller_stacklevel
from rdconfvae.embedding.fragments import Fragment, layout_fragments, split_fragments
from rdconfvae.embedding.prune import prune_indices
from rdconfvae.embedding.ranking import batch_order
from rdconfvae.embedding.sampling import (
    POLISH_STRESS_ITERS,
    STRESS_ITERS,
    ChunkRunner,
    bounds_geometry,
    sample_chunk,
    sample_fragment,
)
from rdconfvae.errors import EmbeddingFailedError, InvalidInputError
from rdconfvae.forcefield.mmff import mmff_can_type, mmff_minimize, mmff_polish
from rdconfvae.geometry.bounds import GeometryGate, bounds_refine
from rdconfvae.geometry.conformers import heavy_with_confs, hydrogen_map
from rdconfvae.geometry.rmsd import superposed_rmsd, symmetry_matches
from rdconfvae.geometry.stereo import declared_stereo_broken
from rdconfvae.model import featurize as fz
from rdconfvae.model.store import LoadedModel, load_model
from rdconfvae.params import EmbedParameters, check_polish_iters, resolve_seed

__all__ = ["generate", "Batch"]

log = logging.getLogger(__name__)

#: Polish steps after the geometry repair, at most ``polishIters`` (None: ``polishIters``).
#: The repair knows no planarity; 20 steps instead of 80 saved 9 % of the default output's
#: CPU at n = 10 with the same poses on held-out CCD validation molecules, but left amides
#: out of plane (benchmarks/diagnostics/polish_iters.md).
REPAIR_POLISH_ITERS: int | None = None


@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def validate_mol(mol: object) -> None:
    """:class:`InvalidInputError` unless ``mol`` is a ``Chem.Mol`` with atoms."""
    if mol is None:
        raise InvalidInputError("molecule is None (did Chem.MolFromSmiles fail to parse it?)")
    if not isinstance(mol, Chem.Mol):
        raise InvalidInputError(f"expected an rdkit Chem.Mol, got {type(mol).__name__}")
    if mol.GetNumAtoms() == 0:
        raise InvalidInputError("molecule has no atoms")


@dataclass
class Batch:
    """Conformers made in one go: caller-order and heavy-atom coordinates (K, N, 3),
    Angstrom; MMFF energies (kcal/mol) and convergence, None without ``mmff``; the checks."""

    all_xyz: np.ndarray
    heavy_xyz: np.ndarray
    energies: list[float | None]
    converged: list[bool | None]
    ok: np.ndarray  # (K,) bool: passed the geometry gate and kept the declared stereo

    def take(self, idx: np.ndarray) -> Batch:
        return Batch(
            self.all_xyz[idx],
            self.heavy_xyz[idx],
            [self.energies[i] for i in idx],
            [self.converged[i] for i in idx],
            self.ok[idx],
        )

    @staticmethod
    def concat(parts: list[Batch]) -> Batch:
        return Batch(
            np.concatenate([p.all_xyz for p in parts]),
            np.concatenate([p.heavy_xyz for p in parts]),
            [e for p in parts for e in p.energies],
            [c for p in parts for c in p.converged],
            np.concatenate([p.ok for p in parts]),
        )


class _Job:
    """One molecule's embedding: the prepared inputs and the stages that make conformers."""

    def __init__(
        self, mol: Chem.Mol, opts: EmbedParameters, mmff: bool, deadline: Deadline
    ) -> None:
        self.opts = opts
        self.mmff = mmff
        self.deadline = deadline
        self.work = Chem.Mol(mol)
        try:
            Chem.SanitizeMol(self.work)
        except Exception as exc:  # RDKit raises several sanitisation error types
            raise InvalidInputError(f"molecule does not sanitize: {exc}") from exc
        self.heavy, self.heavy_idx = fz.heavy_atom_mol(self.work)
        self.frags: list[Fragment] = split_fragments(self.heavy)
        # coordMap (rdconfvae.embedding.constraints): checked before any work
        self.anchor = prepare_anchor(self.work, self.heavy_idx, len(self.frags), opts.coordMap)
        self.model: LoadedModel = load_model()
        threads = int(opts.numThreads) if opts.numThreads is not None else 1
        self.threads = threads if threads > 0 else (os.cpu_count() or 1)
        self.pool: ProcessPoolExecutor | None = (
            workers.get_pool(self.threads, self.model.path.parent) if self.threads > 1 else None
        )
        self.has_h = self.heavy.GetNumAtoms() != self.work.GetNumAtoms()
        polish = check_polish_iters(opts.polishIters)
        if mmff:
            polish = 0  # the minimisation to convergence replaces the polish
        if polish and not mmff_can_type(Chem.AddHs(self.heavy)):
            log.info("MMFF94s cannot type this molecule: conformers are returned unpolished")
            polish = 0  # and they get the raw output's stress refinement
        self.polish = polish
        self.stress_iters = POLISH_STRESS_ITERS if polish else STRESS_ITERS
        self.steps = int(self.model.manifest.get("inference", {}).get("solver_steps", 30))
        self.mmff_warned = False
        self._gates: dict[int, GeometryGate] = {}

    # ------------------------------------------------------------------ sampling

    def _chunk_runner(self, frag: Fragment) -> ChunkRunner:
        graph = frag.graph
        assert graph is not None
        geom = bounds_geometry(frag.mol, graph)
        if self.anchor is not None:
            geom = self.anchor.geometry(geom)
        temperature = float(self.opts.temperature)
        enforce = bool(self.opts.enforceChirality)

        def run(
            chunks: list[torch.Tensor], signs: list[torch.Tensor | None]
        ) -> list[tuple[torch.Tensor, torch.Tensor]]:
            if self.pool is not None and len(chunks) > 1:
                return workers.run_sample_chunks(
                    self.pool,
                    chunks,
                    signs,
                    self.model.path.parent,
                    graph,
                    geom,
                    temperature,
                    self.steps,
                    enforce,
                    self.stress_iters,
                    self.deadline,
                )
            results = []
            for c, sign in zip(chunks, signs, strict=True):
                self.deadline.check("sampling")
                results.append(
                    sample_chunk(
                        self.model,
                        graph,
                        geom,
                        c,
                        temperature,
                        self.steps,
                        enforce,
                        self.stress_iters,
                        sign,
                    )
                )
            return results

        return run if self.anchor is None else self.anchor.checked(run)

    def _sample(self, k: int, seed: int) -> list[np.ndarray]:
        """Up to k heavy-atom conformers per fragment."""
        rounds = max(1, int(self.opts.maxAttempts or 1))
        per_frag = []
        with _torch_threads(1):
            for f_no, frag in enumerate(self.frags):
                if frag.graph is None:
                    per_frag.append(np.zeros((k, 1, 3)))
                    continue
                per_frag.append(
                    sample_fragment(
                        frag.graph,
                        self.model.latent,
                        k,
                        seed + 7919 * f_no,
                        rounds,
                        self.deadline,
                        self._chunk_runner(frag),
                    )
                )
        return per_frag

    # ------------------------------------------------------------ force field

    def _polish(self, full: Chem.Mol, iters: int | None = None) -> None:
        """The default MMFF94s polish of every conformer of ``full`` (typing was checked
        before sampling; ``iters`` steps, default ``polishIters``), split over the worker
        processes when there are some."""
        self.deadline.check("MMFF polish")
        iters = self.polish if iters is None else iters
        if self.anchor is not None:  # fixed atoms held (one after the other: same result)
            fixed = self.anchor.heavy_idx.tolist()
            mmff_polish(full, iters, fixed=fixed, deadline=self.deadline)
        elif self.pool is None or full.GetNumConformers() < 2:
            mmff_polish(full, iters, deadline=self.deadline)
        else:
            workers.polish_in_pool(full, iters, self.pool, self.threads, self.deadline)
        self.deadline.check("MMFF polish")

    def _minimize(
        self, full: Chem.Mol, count: int, conf_ids: list[int] | None = None
    ) -> tuple[list, list]:
        """MMFF94s to convergence of ``conf_ids`` (default: all ``count`` conformers)."""
        self.deadline.check("MMFF")
        if conf_ids is not None:
            count = len(conf_ids)
        res = mmff_minimize(
            full,
            conf_ids,
            dielectric=self.opts.dielectric,
            dielectric_constant=4.0 if self.opts.dielectric == "distance" else 1.0,
            num_threads=self.threads,
            fixed=() if self.anchor is None else self.anchor.heavy_idx.tolist(),
            deadline=self.deadline,
        )
        self.deadline.check("MMFF")
        if res is None:
            if not self.mmff_warned:
                warnings.warn(
                    "MMFF94s cannot type this molecule: conformers are returned unminimised",
                    RuntimeWarning,
                    stacklevel=caller_stacklevel(),
                )
                self.mmff_warned = True
            return [None] * count, [None] * count
        return [r.energy for r in res], [r.converged for r in res]

    # ------------------------------------------------------------------ stages

    def _gate(self, xyz: np.ndarray, mol: Chem.Mol, repair: bool) -> np.ndarray:
        """(K,) True where a conformer passes the geometry gate (:mod:`rdconfvae.geometry.bounds`).

        With ``repair`` a failing conformer is moved into its bounds first
        (:func:`rdconfvae.geometry.bounds.bounds_refine`; every tetrahedral centre keeps its side)
        and ``xyz`` (K, N, 3, in ``mol``'s atom order) is updated in place."""
        key = mol.GetNumAtoms()
        gate = self._gates.get(key)
        if gate is None:
            gate = self._gates[key] = GeometryGate.for_mol(mol)
        bad = gate.failures(xyz)
        # with fixed atoms (coordMap) nothing is moved: a failing conformer is replaced
        if repair and self.anchor is None and bad.any():
            self.deadline.check("geometry check")
            idx = np.flatnonzero(bad)
            fixed = bounds_refine(
                xyz[idx], gate, gate.tetra, gate.hands(xyz[idx]), deadline=self.deadline
            )
            xyz[idx] = fixed
            bad[idx] = gate.failures(fixed)
        return ~bad

    def make(self, k: int, seed: int) -> Batch:
        """Up to k conformers: sampled, laid out, hydrogens placed, polished or minimised,
        then checked (``Batch.ok``: the geometry gate passed and, where enforced, the
        declared stereo kept)."""
        per_frag = self._sample(k, seed)
        count = min(len(x) for x in per_frag)
        if count == 0:
            raise EmbeddingFailedError(
                f"no conformer with the declared stereo after {self.opts.maxAttempts} "
                "sampling rounds"
            )
        coords = layout_fragments(self.heavy, self.frags, per_frag, count)
        heavy_confs = heavy_with_confs(self.heavy, coords)
        if self.anchor is not None:  # the fixed atoms exactly in place (coordMap)
            coords = self.anchor.place(heavy_confs)
        energies: list[float | None] = [None] * count
        converged: list[bool | None] = [None] * count
        if not (self.has_h or self.mmff or self.polish):
            ok = self._gate(coords, self.heavy, repair=True)
            return Batch(coords, coords, energies, converged, ok)
        full = Chem.AddHs(heavy_confs, addCoords=True)
        unpolished = None
        enforce = bool(self.opts.enforceChirality)
        n_heavy = self.heavy.GetNumAtoms()
        if self.polish:
            unpolished = np.stack([c.GetPositions() for c in full.GetConformers()])
            self._polish(full)
        elif self.mmff:
            # the gate judges the start of the minimisation: an MMFF minimum may sit closer
            # than RDKit's distance-geometry lower bounds (hydrogen bonds)
            start = np.stack([c.GetPositions() for c in full.GetConformers()])
            ok = self._gate(start, full, repair=True)
            for conf, xyz in zip(full.GetConformers(), start, strict=True):
                conf.SetPositions(xyz)
            energies, converged = self._minimize(full, count)
        full_xyz = np.stack([c.GetPositions() for c in full.GetConformers()])
        if unpolished is not None and enforce:
            # the rare conformer whose stereo the polish changed keeps its unpolished,
            # stereo-correct coordinates (cheaper than resampling, and always n conformers)
            flipped = declared_stereo_broken(self.frags, full_xyz[:, :n_heavy])
            full_xyz[flipped] = unpolished[flipped]
        if self.polish:
            ok = self._gate(full_xyz, full, repair=False)
            if not ok.all() and self.anchor is None:
                self._repair_and_polish(full, full_xyz, ~ok, enforce)
                ok = self._gate(full_xyz, full, repair=False)
        elif not self.mmff:
            ok = self._gate(full_xyz, full, repair=True)
        if enforce:
            ok &= ~declared_stereo_broken(self.frags, full_xyz[:, :n_heavy])
        heavy_xyz = full_xyz[:, :n_heavy]
        if self.has_h:
            mapping = hydrogen_map(self.work, self.heavy_idx, full)
            all_xyz = full_xyz[:, [mapping[i] for i in range(self.work.GetNumAtoms())]]
        else:
            all_xyz = heavy_xyz
        return Batch(all_xyz, heavy_xyz, energies, converged, ok)

    def _repair_and_polish(
        self,
        full: Chem.Mol,
        full_xyz: np.ndarray,
        bad: np.ndarray,
        enforce: bool,
    ) -> None:
        """Conformers of the default output that fail the gate: repaired into their bounds,
        then polished again (:data:`REPAIR_POLISH_ITERS`; the repair knows no planarity),
        in ``full_xyz`` (K, N, 3).
        One that the second polish takes out of its bounds again, or whose declared stereo
        it changed, keeps its repaired coordinates."""
        idx = np.flatnonzero(bad)
        self._gate(full_xyz, full, repair=True)
        sub = Chem.Mol(full)
        sub.RemoveAllConformers()
        for k, i in enumerate(idx):
            conf = Chem.Conformer(full.GetNumAtoms())
            conf.SetPositions(np.ascontiguousarray(full_xyz[i]))
            conf.SetId(k)
            sub.AddConformer(conf, assignId=False)
        cap = REPAIR_POLISH_ITERS
        self._polish(sub, self.polish if cap is None else min(self.polish, cap))
        again = np.stack([c.GetPositions() for c in sub.GetConformers()])
        repaired = full_xyz[idx]
        # the polish may pull a pair back below its bound (MMFF and RDKit's 1-5 bounds can
        # disagree): then, and where it changed the declared stereo, the repaired
        # coordinates stand
        back = self._gates[full.GetNumAtoms()].failures(again)
        if enforce:
            back |= declared_stereo_broken(self.frags, again[:, : self.heavy.GetNumAtoms()])
        again[back] = repaired[back]
        full_xyz[idx] = again

    def make_checked(self, n: int, seed: int) -> Batch:
        """n conformers that passed the checks of :meth:`make`; the ones that did not
        (MMFF can push a centre through the plane when it starts from a rough geometry,
        measured: 3.4 % of raw model conformers; a geometry the gate cannot repair) are
        dropped and replacements sampled (``maxAttempts`` rounds)."""
        parts = []
        have = 0
        batch = self.make(n, seed)
        for attempt in range(max(1, int(self.opts.maxAttempts or 1)) + 1):
            if attempt > 0:
                missing = n - have
                if missing <= 0:
                    break
                batch = self.make(2 * missing + 2, seed + 104_729 * attempt)
            good = np.flatnonzero(batch.ok)[: n - have]
            parts.append(batch.take(good))
            have += len(good)
        if have == 0:
            raise EmbeddingFailedError(
                "no conformer passed the geometry and stereo checks "
                f"({self._fault_summary(batch)}); the declared stereo may be impossible in 3D"
            )
        return Batch.concat(parts)

    def _fault_summary(self, batch: Batch) -> str:
        if batch.ok.all() or not len(batch.all_xyz):
            return "no conformer sampled"
        first = int(np.flatnonzero(~batch.ok)[0])
        xyz = batch.all_xyz[first]
        text = self._gates.get(self.work.GetNumAtoms()) or GeometryGate.for_mol(self.work)
        found = text.describe(xyz)
        return f"e.g. {found}" if found != "none" else "e.g. the declared stereo changed"

    def prune(self, batch: Batch) -> list[int]:
        """Indices kept by ``pruneRmsThresh`` (lowest energy first when there are energies)."""
        keep = list(range(len(batch.all_xyz)))
        thresh = self.opts.pruneRmsThresh
        if thresh is None or float(thresh) <= 0 or len(keep) <= 1:
            return keep
        self.deadline.check("pruning")
        sub = batch.heavy_xyz[keep]
        rms = superposed_rmsd(sub, sub, symmetry_matches(self.heavy, self.heavy))
        energies = [e if e is not None else 0.0 for e in batch.energies]
        order = (
            sorted(range(len(keep)), key=lambda i: energies[keep[i]])
            if batch.energies[0] is not None
            else None
        )
        return [keep[i] for i in prune_indices(rms, float(thresh), order)]


def generate(
    mol: Chem.Mol, n: int, opts: EmbedParameters, mmff: bool, deadline: Deadline
) -> list[int]:
    """Generate ``n`` conformers and attach them to ``mol``; return their ids.

    ``deadline``: the molecule's time limit (``opts.timeout``), started by the caller.
    Raises on any failure with ``mol`` untouched.
    """
    validate_mol(mol)
    if int(n) <= 0:
        raise InvalidInputError(f"number of conformers must be positive, got {n}")
    seed = resolve_seed(opts.randomSeed)
    job = _Job(mol, opts, mmff, deadline)
    batch = job.make_checked(n, seed)
    if job.polish and not mmff and len(batch.all_xyz) > 1:
        # lowest polished MMFF94s energy first: the first conformers are the most plausible
        batch = batch.take(batch_order(job, batch))  # (rdconfvae.embedding.ranking)
    keep = job.prune(batch)
    # success: now, and only now, touch the caller's molecule
    return attach(
        mol,
        [batch.all_xyz[i] for i in keep],
        [batch.energies[i] for i in keep],
        [batch.converged[i] for i in keep],
        "rdconfvae",
        bool(opts.clearConfs),
    )

"""Public embedding API: conformers from the ConfVAE onto a caller's ``Chem.Mol``.

Pipeline per molecule (data flows one way; only this module writes onto the
caller's molecule, and only once everything succeeded):

    copy -> heavy-atom graph -> featurize -> TorchScript model: z ~ p(z|G), d = D(z,G)
         -> solver: MDS + SMACOF -> stereo: reflect / repair / resample
         -> hydrogens placed on the heavy-atom frame
         -> MMFF94s: a short polish (``polishIters`` steps, default) or, with
            ``mmff=True``, a minimisation to convergence -> stereo re-check
         -> optional symmetry-aware RMSD pruning -> conformers added to ``mol``

Polish: by default every conformer gets ``polishIters`` MMFF94s optimiser steps
(bonded terms and close-contact van der Waals, :func:`rdconfvae.refine.mmff_polish`).
They straighten bond lengths, angles and planar groups the distance decoder
leaves slightly off, ease close contacts and move poses closer to experiment
(README, "Quality"); ``polishIters=0``
returns the model's raw conformers. A conformer whose declared stereo the
polish changed keeps its unpolished coordinates. Molecules MMFF cannot type
get exactly the raw output (the polish is skipped before sampling).

Hydrogens: the model places heavy atoms. When the caller's molecule has
explicit hydrogens they are positioned from the heavy-atom frame (RDKit's
``AddHs(addCoords=True)`` geometry, then the polish or MMFF). Without explicit
hydrogens, no atom is added to the caller's molecule: its conformers hold the
heavy atoms; hydrogens are added to a private copy for the polish or the
minimisation and dropped again.

Several fragments (salts): each fragment with two or more heavy atoms is
embedded on its own; single-atom ions (alkali, alkaline-earth or halide:
``ION_ELEMENTS``) are placed without the model; fragments are then laid side
by side along x with a 4 Angstrom gap between their enclosing spheres.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from rdkit import Chem
from rdkit.Chem import rdDistGeom, rdMolTransforms

from rdconfvae import featurize as fz
from rdconfvae import solver, workers
from rdconfvae.errors import (
    EmbeddingFailedError,
    EmbeddingTimeoutError,
    InvalidInputError,
    RdConfVAEError,
    UnsupportedMoleculeError,
)
from rdconfvae.metrics import superposed_rmsd, symmetry_matches
from rdconfvae.modelstore import LoadedModel, load_model
from rdconfvae.params import EmbedParameters, check_polish_iters, to_params
from rdconfvae.prune import prune_indices
from rdconfvae.refine import (
    CONVERGED_PROP,
    ENERGY_PROP,
    mmff_can_type,
    mmff_minimize,
    mmff_polish,
)

__all__ = ["embed", "EmbedMultipleConfs", "GENERATOR_PROP", "FallbackWarning"]

log = logging.getLogger(__name__)

#: Conformer property naming the generator that made it: "rdconfvae" or "etkdg".
GENERATOR_PROP = "rdconfvae_generator"
#: Most samples decoded and solved together (a chunk); chunks are fixed by the number
#: of samples alone, so results do not depend on the number of worker processes.
_CHUNK = 16
#: L-BFGS iterations on the weighted stress after SMACOF, for the raw output and ahead of
#: ``mmff=True``: bond lengths within ~0.01 A of their targets.
STRESS_ITERS = 20
#: The same ahead of the default MMFF polish, which straightens bonds and angles itself:
#: on held-out CCD validation, spending the time on polish steps instead gave closer poses.
POLISH_STRESS_ITERS = 0
#: Stereo within these margins is repaired like wrong stereo, and the repair pushes it
#: past them: signed volume in Angstrom^3 (a tetrahedral carbon has ~2.5), cos(dihedral).
_WEAK_VOLUME = 1.0
_WEAK_COS = 0.5
#: Gap between fragments laid side by side, Angstrom.
_FRAGMENT_GAP = 4.0
#: Elements accepted as single-atom fragments (counter-ions of salts).
ION_ELEMENTS = frozenset(
    {"Li", "Na", "K", "Rb", "Cs", "Mg", "Ca", "Sr", "Ba", "F", "Cl", "Br", "I"}
)

_fallback_warned = threading.Event()


class FallbackWarning(UserWarning):
    """A molecule outside the model's domain was embedded with RDKit's ETKDGv3."""


# ----------------------------------------------------------------------------- helpers


@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


class _Clock:
    def __init__(self, timeout: float | None) -> None:
        self.deadline = time.monotonic() + timeout if timeout else math.inf
        self.timeout = timeout

    def remaining(self) -> float | None:
        """Seconds left (None: no timeout)."""
        if math.isinf(self.deadline):
            return None
        return max(self.deadline - time.monotonic(), 0.0)

    def check(self, stage: str) -> None:
        if time.monotonic() > self.deadline:
            raise EmbeddingTimeoutError(f"timeout of {self.timeout} s reached during {stage}")


def _resolve_seed(seed: int) -> int:
    if seed is None or int(seed) < 0:
        return random.SystemRandom().randrange(0, 2**31 - 1)
    return int(seed)


def _validate_mol(mol: Any) -> None:
    if mol is None:
        raise InvalidInputError("molecule is None (did Chem.MolFromSmiles fail to parse it?)")
    if not isinstance(mol, Chem.Mol):
        raise InvalidInputError(f"expected an rdkit Chem.Mol, got {type(mol).__name__}")
    if mol.GetNumAtoms() == 0:
        raise InvalidInputError("molecule has no atoms")


@dataclass
class _Fragment:
    """One connected piece of the heavy-atom graph (indices into the heavy molecule)."""

    atoms: tuple[int, ...]
    mol: Chem.Mol
    graph: fz.MolGraph | None  # None for a single atom


def _fragments(heavy: Chem.Mol) -> list[_Fragment]:
    """Featurize every fragment; raises UnsupportedMoleculeError before any work is done."""
    atom_sets = Chem.GetMolFrags(heavy, asMols=False, sanitizeFrags=False)
    if len(atom_sets) == 1:
        return [_Fragment(atom_sets[0], heavy, fz.featurize(heavy))]
    mols = Chem.GetMolFrags(heavy, asMols=True, sanitizeFrags=False)
    frags = []
    for atoms, frag in zip(atom_sets, mols, strict=True):
        if frag.GetNumAtoms() == 1:
            symbol = frag.GetAtomWithIdx(0).GetSymbol()
            if symbol not in ION_ELEMENTS:
                raise UnsupportedMoleculeError(
                    f"atom {atoms[0]} ({symbol}): single-atom fragment of an element that is "
                    f"not a supported counter-ion ({' '.join(sorted(ION_ELEMENTS))})"
                )
            frags.append(_Fragment(atoms, frag, None))
            continue
        frag.UpdatePropertyCache(strict=False)
        Chem.FastFindRings(frag)
        try:
            graph = fz.featurize(frag)
        except UnsupportedMoleculeError as exc:
            raise UnsupportedMoleculeError(f"fragment of heavy atoms {list(atoms)}: {exc}") from exc
        frags.append(_Fragment(atoms, frag, graph))
    return frags


# ------------------------------------------------------------------------ generation


@dataclass(frozen=True)
class _Geometry:
    """Distance-geometry bounds of a fragment's heavy-atom pairs (RDKit's bounds matrix).

    Shapes: lower, upper, weight (P,) in pair order; Angstrom.
    """

    lower: torch.Tensor
    upper: torch.Tensor
    weight: torch.Tensor


#: Extra stress weight on pairs whose distance the bounds fix: bonds, angles, and the
#: 1-4 pairs of planar groups (amides, esters, double bonds) whose bounds are tight.
_LOCAL_WEIGHT = 100.0
#: Bounds narrower than this (Angstrom) count as fixed.
_TIGHT_BOUNDS = 0.25


def _geometry(mol: Chem.Mol, graph: fz.MolGraph) -> _Geometry:
    """RDKit's distance bounds (bond lengths and angles from its force-field tables, van der
    Waals lower bounds elsewhere) for clamping the model's distances before the solve."""
    bounds = rdDistGeom.GetMoleculeBoundsMatrix(mol)
    i, j = graph.pair_i.numpy(), graph.pair_j.numpy()
    upper = torch.tensor(bounds[i, j], dtype=torch.float32)
    lower = torch.tensor(bounds[j, i], dtype=torch.float32)
    path = graph.pair_feat[:, : fz.MAX_PATH + 1].argmax(-1)  # 0: bonded, 1: 1-3 pair
    fixed = (path <= 1) | (upper - lower < _TIGHT_BOUNDS)
    weight = torch.where(fixed, _LOCAL_WEIGHT, 1.0)
    return _Geometry(lower, upper, weight)


def _sample_chunk(
    model: LoadedModel,
    graph: fz.MolGraph,
    geom: _Geometry,
    eps: torch.Tensor,
    temperature: float,
    steps: int,
    enforce: bool,
    stress_iters: int = STRESS_ITERS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode, solve (``steps`` SMACOF updates, then ``stress_iters`` L-BFGS iterations)
    and repair stereo for one chunk; returns coords (k, N, 3) and ok (k,)."""
    n = graph.num_atoms
    inv = torch.full((n,), 1.0 / max(n - 1, 1))
    with torch.no_grad():
        dist, log_sigma = model.module.sample_distances(
            graph.atom_feat, graph.pair_feat, graph.pair_i, graph.pair_j, inv, eps, temperature
        )
        dist = torch.minimum(torch.maximum(dist, geom.lower), geom.upper)
        d, w = solver.dense_pairs(dist, log_sigma, graph.pair_i, graph.pair_j, n, geom.weight)
        ones = torch.ones(d.shape[0], n)
        x = solver.solve(d, w, ones, steps=steps)
        if stress_iters > 0:
            x = solver.polish(x, d, w, ones, iters=stress_iters)
    ok = torch.ones(x.shape[0], dtype=torch.bool)
    if graph.chiral_idx.shape[0] == 0 and graph.dbl_idx.shape[0] == 0:
        return x, ok
    args = (graph.chiral_idx, graph.chiral_sign, graph.dbl_idx, graph.dbl_cis)
    # the mirror image has the same distances: take it where it has fewer wrong centres
    wrong_c, _ = solver.stereo_violations(x, *args)
    mirrored = x * torch.tensor([-1.0, 1.0, 1.0])
    wrong_cm, _ = solver.stereo_violations(mirrored, *args)
    flip = wrong_cm < wrong_c
    x = torch.where(flip[:, None, None], mirrored, x)
    # repair wrong and weak stereo alike: a nearly flat centre is right by sign, but the
    # polish or MMFF that follows pushes it through (measured: a third of the polish's
    # stereo flips). The margins include every wrong centre and bond.
    weak_c, weak_d = solver.stereo_violations(x, *args, _WEAK_VOLUME, _WEAK_COS)
    bad = (weak_c + weak_d) > 0
    if enforce and bad.any():
        sub = bad.nonzero().squeeze(-1)
        d, w = solver.dense_pairs(
            dist[sub], log_sigma[sub], graph.pair_i, graph.pair_j, n, geom.weight
        )
        fixed = solver.stereo_penalty_refine(
            x[sub],
            d,
            w,
            torch.ones(len(sub), n),
            *args,
            volume_margin=_WEAK_VOLUME,
            cos_margin=_WEAK_COS,
        )
        x[sub] = fixed
        wc, wd = solver.stereo_violations(fixed, *args)
        ok[sub] = (wc + wd) == 0
    return x, ok


def _chunks(k: int) -> list[int]:
    """Sizes of the sample chunks for k samples: at most ``_CHUNK`` each, as even as possible.

    Depends on k only, so the coordinates do not depend on the number of workers."""
    m = max(1, math.ceil(k / _CHUNK))
    return [k // m + (1 if i < k % m else 0) for i in range(m)]


def _generate_fragment(
    model: LoadedModel,
    frag: _Fragment,
    n: int,
    seed: int,
    opts: EmbedParameters,
    clock: _Clock,
    pool: ProcessPoolExecutor | None,
    stress_iters: int,
) -> np.ndarray:
    """Up to n stereo-correct heavy-atom conformers (k, N, 3) of one fragment."""
    graph = frag.graph
    assert graph is not None  # single atoms are placed without the model
    geom = _geometry(frag.mol, graph)
    steps = int(model.manifest.get("inference", {}).get("solver_steps", 30))
    temperature = float(opts.temperature)
    enforce = bool(opts.enforceChirality)
    found: list[torch.Tensor] = []
    have = 0
    rounds = max(1, int(opts.maxAttempts or 1))
    for round_no in range(rounds):
        need = n - have
        if need <= 0:
            break
        # oversample a little in later rounds, where stereo repair already failed once
        k = need if round_no == 0 else int(math.ceil(need * 2)) + 2
        gen = torch.Generator().manual_seed((seed * 1_000_003 + round_no) % (2**63 - 1))
        eps = torch.randn(k, graph.num_atoms, model.latent, generator=gen)
        chunks = list(torch.split(eps, _chunks(k)))
        if pool is not None and len(chunks) > 1:
            graph_np, geom_np = workers.to_arrays(graph), workers.to_arrays(geom)
            futures = [
                pool.submit(
                    workers.sample_chunk_task,
                    str(model.path.parent),
                    graph_np,
                    geom_np,
                    c.numpy(),
                    temperature,
                    steps,
                    enforce,
                    stress_iters,
                    clock.deadline,
                )
                for c in chunks
            ]
            results = []
            try:
                for fut in futures:
                    x_np, ok_np = fut.result(timeout=clock.remaining())
                    results.append((torch.from_numpy(x_np), torch.from_numpy(ok_np)))
            except FuturesTimeout:
                raise EmbeddingTimeoutError(
                    f"timeout of {clock.timeout} s reached during sampling"
                ) from None
            finally:
                for fut in futures:
                    fut.cancel()
        else:
            results = []
            for c in chunks:
                clock.check("sampling")
                results.append(
                    _sample_chunk(model, graph, geom, c, temperature, steps, enforce, stress_iters)
                )
        for x, ok in results:
            good = x[ok]
            found.append(good[: max(n - have, 0)])
            have += int(min(len(good), max(n - have, 0)))
        clock.check("sampling")
    if not found:
        return np.zeros((0, graph.num_atoms, 3))
    return torch.cat(found).double().numpy()


def _layout_fragments(
    heavy: Chem.Mol, frags: list[_Fragment], per_frag: list[np.ndarray], count: int
) -> np.ndarray:
    """Combine fragment conformers into (count, N_heavy, 3).

    Each fragment is centred, then placed along x so that the spheres enclosing
    consecutive fragments are ``_FRAGMENT_GAP`` apart.
    """
    out = np.zeros((count, heavy.GetNumAtoms(), 3))
    cursor = None  # (count,) x of the right edge of the fragments placed so far
    for frag, xyz in zip(frags, per_frag, strict=True):
        xyz = xyz[:count] - xyz[:count].mean(axis=1, keepdims=True)
        radius = np.linalg.norm(xyz, axis=-1).max(axis=1)
        centre = np.zeros(count) if cursor is None else cursor + _FRAGMENT_GAP + radius
        xyz[..., 0] += centre[:, None]
        out[:, list(frag.atoms)] = xyz
        cursor = centre + radius
    return out


# -------------------------------------------------------------------- hydrogens, mmff


#: Acyclic amide, ester, carbamate and urea bonds: O=C-X-R, X = N or O, R heavy.
_PLANAR_GROUP = Chem.MolFromSmarts("[OX1]=[CX3]-!@[NX3,OX2]-[!#1]")


def _heavy_with_confs(heavy: Chem.Mol, coords: np.ndarray) -> Chem.Mol:
    """The heavy-atom molecule with one conformer per coordinate set.

    Acyclic amide/ester groups are snapped to the nearest planar form (O=C-X-R
    dihedral 0 or 180 degrees) by a rigid rotation about the C-X bond, which keeps
    every bond length and angle: crystal structures show them planar, and the
    distance solver can leave them twisted where the predicted distances disagree.
    """
    work = Chem.Mol(heavy)
    work.RemoveAllConformers()
    groups = []
    for o, c, x, r in {m[:3]: m for m in heavy.GetSubstructMatches(_PLANAR_GROUP)}.values():
        others = [n.GetIdx() for n in heavy.GetAtomWithIdx(c).GetNeighbors()]
        others = [i for i in others if i not in (o, x)]
        groups.append((o, c, x, r, others[0] if others else -1))
    for k, xyz in enumerate(coords):
        conf = Chem.Conformer(heavy.GetNumAtoms())
        conf.Set3D(True)
        conf.SetPositions(xyz)
        conf.SetId(k)
        work.AddConformer(conf, assignId=False)
        owned = work.GetConformer(k)  # dihedral setters need the molecule's graph
        for o, c, x, r, a in groups:
            # rotate about C-X so that O and the other C substituent A sit, on average,
            # in the plane (O cis or trans to R, A opposite): pyramidal noise is shared
            phi_o = rdMolTransforms.GetDihedralDeg(owned, o, c, x, r)
            target_o = 0.0 if abs(phi_o) < 90 else 180.0
            delta = _wrap(target_o - phi_o)
            if a >= 0:
                phi_a = rdMolTransforms.GetDihedralDeg(owned, a, c, x, r)
                delta = 0.5 * (delta + _wrap(target_o + 180.0 - phi_a))
            rdMolTransforms.SetDihedralDeg(owned, o, c, x, r, phi_o + delta)
    return work


def _wrap(angle: float) -> float:
    """Angle in degrees mapped to [-180, 180)."""
    return (angle + 180.0) % 360.0 - 180.0


def _hydrogen_map(mol: Chem.Mol, heavy_idx: list[int], full: Chem.Mol) -> dict[int, int]:
    """Caller atom index -> atom index in ``full`` (heavy atoms first, then AddHs' H)."""
    pos_of = {orig: k for k, orig in enumerate(heavy_idx)}
    mapping = dict(pos_of)
    free: dict[int, list[int]] = {}
    for atom in full.GetAtoms():
        if atom.GetIdx() >= len(heavy_idx):
            (nbr,) = (a.GetIdx() for a in atom.GetNeighbors())
            free.setdefault(nbr, []).append(atom.GetIdx())
    for atom in mol.GetAtoms():
        if atom.GetAtomicNum() != 1:
            continue
        heavy_nbrs = [a.GetIdx() for a in atom.GetNeighbors() if a.GetAtomicNum() != 1]
        if len(heavy_nbrs) != 1 or not free.get(pos_of[heavy_nbrs[0]]):
            raise UnsupportedMoleculeError(
                f"atom {atom.GetIdx()} (H): hydrogen not bonded to exactly one heavy atom"
            )
        mapping[atom.GetIdx()] = free[pos_of[heavy_nbrs[0]]].pop(0)
    return mapping


# ------------------------------------------------------------------------------ core


def _stereo_broken(frags: list[_Fragment], heavy_xyz: np.ndarray) -> np.ndarray:
    """(count,) True where a conformer violates a declared centre or E/Z bond of any fragment."""
    bad = np.zeros(len(heavy_xyz), dtype=bool)
    for frag in frags:
        g = frag.graph
        if g is None or (g.chiral_idx.shape[0] == 0 and g.dbl_idx.shape[0] == 0):
            continue
        x = torch.tensor(heavy_xyz[:, list(frag.atoms)], dtype=torch.float32)
        wc, wd = solver.stereo_violations(x, g.chiral_idx, g.chiral_sign, g.dbl_idx, g.dbl_cis)
        bad |= ((wc + wd) > 0).numpy()
    return bad


def _polish(
    full: Chem.Mol, iters: int, pool: ProcessPoolExecutor | None, threads: int, clock: _Clock
) -> bool:
    """:func:`mmff_polish` on every conformer of ``full``, split over the ``threads``
    workers of ``pool`` when there is one (each conformer is polished on its own, so the
    coordinates do not depend on the split). Returns False when MMFF cannot type the
    molecule (nothing changed then)."""
    confs = list(full.GetConformers())
    if pool is None or len(confs) < 2:
        return mmff_polish(full, iters)
    groups = np.array_split(np.arange(len(confs)), min(len(confs), threads))
    binary = Chem.Mol(full, confId=confs[0].GetId()).ToBinary()
    xyz_all = np.stack([c.GetPositions() for c in confs])
    futures = [pool.submit(workers.polish_task, binary, xyz_all[g], iters) for g in groups]
    try:
        results = [fut.result(timeout=clock.remaining()) for fut in futures]
    except FuturesTimeout:
        raise EmbeddingTimeoutError(
            f"timeout of {clock.timeout} s reached during the polish"
        ) from None
    finally:
        for fut in futures:
            fut.cancel()
    if not all(typed for _, typed in results):
        return False
    for group, (xyz, _) in zip(groups, results, strict=True):
        for i, x in zip(group, xyz, strict=True):
            confs[i].SetPositions(x)
    return True


def _run(mol: Chem.Mol, n: int, opts: EmbedParameters, mmff: bool) -> list[int]:
    """Generate and attach; raises on any failure with ``mol`` untouched."""
    _validate_mol(mol)
    if int(n) <= 0:
        raise InvalidInputError(f"number of conformers must be positive, got {n}")
    clock = _Clock(float(opts.timeout) if opts.timeout else None)
    seed = _resolve_seed(opts.randomSeed)
    work = Chem.Mol(mol)
    try:
        Chem.SanitizeMol(work)
    except Exception as exc:  # RDKit raises several sanitisation error types
        raise InvalidInputError(f"molecule does not sanitize: {exc}") from exc
    heavy, heavy_idx = fz.heavy_atom_mol(work)
    frags = _fragments(heavy)

    model = load_model()
    threads = int(opts.numThreads) if opts.numThreads is not None else 1
    if threads <= 0:
        import os

        threads = os.cpu_count() or 1
    pool = workers.get_pool(threads, model.path.parent) if threads > 1 else None
    has_h = heavy.GetNumAtoms() != work.GetNumAtoms()
    polish = check_polish_iters(opts.polishIters)
    if mmff:
        polish = 0  # the minimisation to convergence replaces the polish
    if polish and not mmff_can_type(Chem.AddHs(heavy)):
        log.info("MMFF94s cannot type this molecule: conformers are returned unpolished")
        polish = 0  # and they get the raw output's stress refinement
    stress_iters = POLISH_STRESS_ITERS if polish else STRESS_ITERS
    warned = {"mmff": False}

    def make(k: int, seed_k: int) -> tuple[np.ndarray, np.ndarray, list, list]:
        """Up to k conformers: all-atom and heavy-atom coordinates, MMFF energies, convergence."""
        with _torch_threads(1):
            per_frag = []
            for f_no, frag in enumerate(frags):
                if frag.graph is None:
                    per_frag.append(np.zeros((k, 1, 3)))
                    continue
                xyz = _generate_fragment(
                    model, frag, k, seed_k + 7919 * f_no, opts, clock, pool, stress_iters
                )
                per_frag.append(xyz)
        count = min(len(x) for x in per_frag)
        if count == 0:
            raise EmbeddingFailedError(
                f"no conformer with the declared stereo after {opts.maxAttempts} sampling rounds"
            )
        coords = _layout_fragments(heavy, frags, per_frag, count)
        heavy_confs = _heavy_with_confs(heavy, coords)
        energies: list[float | None] = [None] * count
        converged: list[bool | None] = [None] * count
        if not (has_h or mmff or polish):
            return coords, coords, energies, converged
        full = Chem.AddHs(heavy_confs, addCoords=True)
        unpolished = None
        if polish:
            clock.check("MMFF polish")
            unpolished = np.stack([c.GetPositions() for c in full.GetConformers()])
            _polish(full, polish, pool, threads, clock)  # typing was checked before sampling
            clock.check("MMFF polish")
        elif mmff:
            clock.check("MMFF")
            res = mmff_minimize(
                full,
                dielectric=opts.dielectric,
                dielectric_constant=4.0 if opts.dielectric == "distance" else 1.0,
                num_threads=threads,
            )
            clock.check("MMFF")
            if res is None:
                if not warned["mmff"]:
                    warnings.warn(
                        "MMFF94s cannot type this molecule: conformers are returned unminimised",
                        RuntimeWarning,
                        stacklevel=4,
                    )
                    warned["mmff"] = True
            else:
                energies = [r.energy for r in res]
                converged = [r.converged for r in res]
        full_xyz = np.stack([c.GetPositions() for c in full.GetConformers()])
        if unpolished is not None and bool(opts.enforceChirality):
            # the rare conformer whose stereo the polish changed keeps its unpolished,
            # stereo-correct coordinates (cheaper than resampling, and always n conformers)
            flipped = _stereo_broken(frags, full_xyz[:, : heavy.GetNumAtoms()])
            full_xyz[flipped] = unpolished[flipped]
        heavy_xyz = full_xyz[:, : heavy.GetNumAtoms()]
        if has_h:
            mapping = _hydrogen_map(work, heavy_idx, full)
            all_xyz = full_xyz[:, [mapping[i] for i in range(work.GetNumAtoms())]]
        else:
            all_xyz = heavy_xyz
        return all_xyz, heavy_xyz, energies, converged

    all_xyz, heavy_xyz, energies, converged = make(n, seed)
    if mmff and bool(opts.enforceChirality):
        # MMFF can push a centre through the plane when it starts from a rough geometry
        # (measured: 3.4 % of raw model conformers): drop those and sample replacements
        parts = []
        have = 0
        batch = (all_xyz, heavy_xyz, energies, converged)
        for attempt in range(max(1, int(opts.maxAttempts or 1)) + 1):
            if attempt > 0:
                missing = n - have
                if missing <= 0:
                    break
                batch = make(2 * missing + 2, seed + 104_729 * attempt)
            good = np.flatnonzero(~_stereo_broken(frags, batch[1]))[: n - have]
            parts.append(
                [batch[0][good], batch[1][good]] + [[batch[j][i] for i in good] for j in (2, 3)]
            )
            have += len(good)
        if have == 0:
            raise EmbeddingFailedError("every conformer changed its stereo during MMFF")
        all_xyz = np.concatenate([p[0] for p in parts])
        heavy_xyz = np.concatenate([p[1] for p in parts])
        energies = [e for p in parts for e in p[2]]
        converged = [c for p in parts for c in p[3]]
    count = len(all_xyz)

    keep = list(range(count))
    if opts.pruneRmsThresh is not None and float(opts.pruneRmsThresh) > 0 and count > 1:
        clock.check("pruning")
        sub = heavy_xyz[keep]
        rms = superposed_rmsd(sub, sub, symmetry_matches(heavy, heavy))
        order = (
            sorted(range(len(keep)), key=lambda i: energies[keep[i]])
            if energies[0] is not None
            else None
        )
        keep = [keep[i] for i in prune_indices(rms, float(opts.pruneRmsThresh), order)]

    # success: now, and only now, touch the caller's molecule
    return _attach(
        mol,
        [all_xyz[i] for i in keep],
        [energies[i] for i in keep],
        [converged[i] for i in keep],
        "rdconfvae",
        bool(opts.clearConfs),
    )


def _attach(
    mol: Chem.Mol,
    coords: list[np.ndarray],
    energies: list[float | None],
    converged: list[bool | None],
    generator: str,
    clear: bool,
) -> list[int]:
    if clear:
        mol.RemoveAllConformers()
    start = max((c.GetId() for c in mol.GetConformers()), default=-1) + 1
    ids = []
    for k, xyz in enumerate(coords):
        conf = Chem.Conformer(mol.GetNumAtoms())
        conf.Set3D(True)
        conf.SetPositions(np.ascontiguousarray(xyz, dtype=float))
        conf.SetId(start + k)
        conf.SetProp(GENERATOR_PROP, generator)
        energy = energies[k]
        if energy is not None:
            conf.SetDoubleProp(ENERGY_PROP, float(energy))
            conf.SetBoolProp(CONVERGED_PROP, bool(converged[k]))
        mol.AddConformer(conf, assignId=False)
        ids.append(start + k)
    return ids


def _etkdg(mol: Chem.Mol, n: int, opts: EmbedParameters, mmff: bool) -> list[int]:
    """Fallback: RDKit ETKDGv3 on a copy (hydrogens added when missing), then attached."""
    if not _fallback_warned.is_set():
        _fallback_warned.set()
        warnings.warn(
            "molecule outside the ConfVAE domain: embedded with RDKit ETKDGv3 instead "
            f"(conformer property {GENERATOR_PROP!r} says which generator made each conformer)",
            FallbackWarning,
            stacklevel=3,
        )
    work = Chem.Mol(mol)
    has_h = any(a.GetAtomicNum() == 1 for a in work.GetAtoms())
    full = work if has_h else Chem.AddHs(work)
    params = rdDistGeom.ETKDGv3()
    # rdkit's stubs type these fields as EmbedParameters: the ignores are for that
    params.randomSeed = _resolve_seed(opts.randomSeed)  # type: ignore[assignment]
    params.numThreads = int(opts.numThreads or 0)  # type: ignore[assignment]
    params.pruneRmsThresh = float(opts.pruneRmsThresh or -1.0)  # type: ignore[assignment]
    params.enforceChirality = bool(opts.enforceChirality)  # type: ignore[assignment]
    if opts.timeout:
        params.timeout = int(math.ceil(float(opts.timeout)))  # type: ignore[assignment]
    ids = list(rdDistGeom.EmbedMultipleConfs(full, int(n), params))
    if not ids:
        raise EmbeddingFailedError("ETKDGv3 fallback produced no conformer")
    energies: list[float | None] = [None] * len(ids)
    converged: list[bool | None] = [None] * len(ids)
    if mmff:
        res = mmff_minimize(
            full,
            dielectric=opts.dielectric,
            dielectric_constant=4.0 if opts.dielectric == "distance" else 1.0,
            num_threads=int(opts.numThreads or 0),
        )
        if res is not None:
            energies = [r.energy for r in res]
            converged = [r.converged for r in res]
    n_atoms = work.GetNumAtoms()
    coords = [full.GetConformer(i).GetPositions()[:n_atoms] for i in ids]
    return _attach(mol, coords, energies, converged, "etkdg", bool(opts.clearConfs))


def _dispatch(mol: Chem.Mol, n: int, opts: EmbedParameters) -> list[int]:
    mmff = bool(opts.mmff)
    if opts.fallback not in ("raise", "etkdg"):
        raise InvalidInputError(f"fallback must be 'raise' or 'etkdg', got {opts.fallback!r}")
    try:
        return _run(mol, n, opts, mmff)
    except UnsupportedMoleculeError:
        if opts.fallback != "etkdg":
            raise
    return _etkdg(mol, n, opts, mmff)


# ---------------------------------------------------------------------------- public


def embed(
    mol: Chem.Mol,
    n: int = 50,
    *,
    mmff: bool = False,
    seed: int = -1,
    clear_confs: bool = True,
    prune_rms: float = -1.0,
    num_threads: int = 1,
    timeout: float | None = None,
    fallback: Literal["raise", "etkdg"] = "raise",
    params: EmbedParameters | Any | None = None,
) -> list[int]:
    """Embed ``n`` conformers of ``mol`` in place with the ConfVAE; return their ids.

    Args:
        mol: an RDKit molecule, with or without explicit hydrogens (see module doc).
        n: number of conformers (> 0). Fewer are returned only after pruning. With
            ``mmff=True`` a conformer whose stereo the minimisation changed is replaced by
            a new sample (``maxAttempts`` rounds), never returned.
        mmff: minimise each conformer with MMFF94s to convergence (distance-dependent
            dielectric eps = 4r by default, see ``params.dielectric``); the energy
            (kcal/mol) is stored as conformer property ``MMFF_ENERGY``. Without it,
            each conformer gets a short polish instead: ``params.polishIters``
            MMFF94s optimiser steps (bonded terms, close-contact van der Waals),
            no energy stored;
            ``polishIters=0`` returns the model's raw conformers.
        seed: random seed; -1 draws one at random. Same seed, same coordinates for
            any ``num_threads``.
        clear_confs: remove existing conformers first (ids restart at 0); otherwise
            new ids follow the largest existing id.
        prune_rms: if > 0, every kept pair differs by at least this heavy-atom,
            symmetry-aware RMSD (Angstrom).
        num_threads: worker threads (0: all cores).
        timeout: seconds per molecule; :class:`EmbeddingTimeoutError` when exceeded.
        fallback: ``"raise"`` (default): out-of-domain molecules raise
            :class:`UnsupportedMoleculeError`; ``"etkdg"``: embed them with RDKit's
            ETKDGv3 instead (warns once per process; conformer property
            ``rdconfvae_generator`` records the generator).
        params: an :class:`EmbedParameters` or RDKit ``EmbedParameters`` supplying
            the options; keyword arguments given with a non-default value win.

    Raises:
        InvalidInputError: ``mol`` is None, empty or does not sanitize; ``n <= 0``.
        UnsupportedMoleculeError / MoleculeTooLargeError: outside the model's domain.
        EmbeddingFailedError / EmbeddingTimeoutError: no conformer could be made.

    On any error ``mol`` keeps exactly the conformers it had.

    >>> from rdkit import Chem
    >>> m = Chem.AddHs(Chem.MolFromSmiles("CC(=O)Nc1ccc(O)cc1"))
    >>> embed(m, n=3, seed=7)
    [0, 1, 2]
    """
    opts = to_params(params)
    defaults = {
        "mmff": False,
        "randomSeed": -1,
        "clearConfs": True,
        "pruneRmsThresh": -1.0,
        "numThreads": 1,
        "timeout": 0.0,
    }
    given = {
        "mmff": mmff,
        "randomSeed": seed,
        "clearConfs": clear_confs,
        "pruneRmsThresh": prune_rms,
        "numThreads": num_threads,
        "timeout": timeout or 0.0,
    }
    for key, value in given.items():
        if params is None or value != defaults[key]:
            setattr(opts, key, value)
    opts.fallback = fallback
    return _dispatch(mol, n, opts)


def EmbedMultipleConfs(  # noqa: N802 -- RDKit's name
    mol: Chem.Mol,
    numConfs: int = 10,
    params: Any = None,
    **kwargs: Any,  # noqa: N803
) -> list[int]:
    """Drop-in for ``AllChem.EmbedMultipleConfs``: same arguments, same return contract.

    ``params`` may be :class:`rdconfvae.EmbedParameters` or RDKit's own
    (``AllChem.ETKDGv3()``): ``randomSeed``, ``clearConfs``, ``pruneRmsThresh``,
    ``numThreads``, ``enforceChirality`` and ``timeout`` are honoured; RDKit's
    other fields are accepted and ignored. Keyword arguments use RDKit's names
    (``randomSeed=42``, ``pruneRmsThresh=0.5``, ...) plus ours (``mmff``,
    ``polishIters``, ``dielectric``, ``fallback``, ``temperature``, ``maxAttempts``); an unknown
    keyword raises ``TypeError``.

    Returns the ids of the conformers added; on embedding failure a shorter or
    empty list (never -1) and ``mol`` unchanged. Out-of-domain molecules fall
    back to ETKDGv3 (``fallback="etkdg"`` is the default here). A ``None``
    molecule raises :class:`InvalidInputError` (RDKit raises too).
    """
    if isinstance(params, int) and not isinstance(params, bool):
        kwargs.setdefault("maxAttempts", params)  # RDKit's third positional argument
        params = None
    opts = to_params(params)
    for key, value in kwargs.items():
        if key not in EmbedParameters.__slots__:
            raise TypeError(f"EmbedMultipleConfs() got an unexpected keyword argument {key!r}")
        setattr(opts, key, value)
    _validate_mol(mol)
    if int(numConfs) <= 0:
        return []
    try:
        return _dispatch(mol, int(numConfs), opts)
    except (EmbeddingFailedError, UnsupportedMoleculeError) as exc:
        log.warning("EmbedMultipleConfs: no conformers: %s", exc)
        return []
    except RdConfVAEError:
        raise

"""Train the ConfVAE: ``python -m rdconfvae.train --preset default``.

Bilevel objective per molecule (one experimental conformation R*):

    z ~ q(z | G, R*)                         posterior sample (reparameterised)
    d = D(z, G)                              log-normal distances on all heavy pairs
    R = solve(d)                             MDS + SMACOF; gradients flow through
                                             the last ``grad_steps`` updates
    loss = coord_weight * RMSD_align(R, R*)  outer problem (Kabsch, mirror allowed:
                                             distances cannot tell mirror images apart)
         + dist_weight * NLL(log d* | D)     auxiliary distance loss
         + beta * KL(q || p)                 per atom, nats; balanced (the prior is pulled
                                             to the posterior more than the reverse) with
                                             free bits so the latent stays in use

Validation (drives checkpoint choice and early stopping, and tracks the Platinum
benchmark): for each held-out molecule draw ``val_samples`` conformers from the
prior, solve, and take the minimum heavy-atom RMSD to its experimental pose;
report the median and the share below 1 Angstrom.

Training data: the CCD set (``python -m rdconfvae.data ccd DIR``, built on demand
when ``--data DIR`` holds none yet), or any SDF with 3D records (one molecule per
record, split by name). Benchmark molecules are excluded when the set is built
and checked again here.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import random
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from rdconfvae import featurize as fz
from rdconfvae import solver
from rdconfvae.errors import DataError, RdConfVAEError
from rdconfvae.model import ConfVAE, default_config

log = logging.getLogger("rdconfvae.train")

__all__ = ["Preset", "PRESETS", "main", "train"]


@dataclass
class Preset:
    """Training hyper-parameters (architecture sizes go into the model config)."""

    hidden: int = 96
    latent: int = 8
    trunk_layers: int = 3
    encoder_layers: int = 2
    decoder_layers: int = 2
    # architecture options of rdconfvae.model (0: the v1 architecture); see its docstring
    path_layers: int = 0
    path_iters: int = 1
    global_latent: int = 0
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    max_epochs: int = 100
    patience: int = 8  # epochs without validation improvement
    beta: float = 1.0
    kl_balance: float = 0.8  # weight of the prior-side KL gradient
    free_bits: float = 0.5  # nats per atom the encoder may use without KL cost
    coord_weight: float = 1.0
    dist_weight: float = 1.0
    solver_steps: int = 12
    grad_steps: int = 3
    val_molecules: int = 400
    val_samples: int = 8
    max_train_molecules: int = 0  # 0 = all
    max_heavy_atoms: int = fz.MAX_HEAVY_ATOMS
    checkpoint_minutes: float = 10.0
    budget_hours: float = 8.0  # total training wall time over all sittings (0: none)
    seed: int = 0
    extra: dict = field(default_factory=dict)


PRESETS: dict[str, Preset] = {
    # a minute on 2 CPU cores: for tests and smoke runs
    "tiny": Preset(
        hidden=32,
        latent=4,
        trunk_layers=2,
        encoder_layers=1,
        decoder_layers=1,
        batch_size=16,
        max_epochs=3,
        patience=3,
        solver_steps=8,
        grad_steps=2,
        val_molecules=16,
        val_samples=4,
        max_train_molecules=200,
        budget_hours=0.0,
    ),
    # the shipped weights: at most 8 hours on a 2-core CPU machine, resumable
    "default": Preset(),
    # v2 candidate (issue 17): the default preset plus two bond-path decoder layers; 1.3x
    # the step time of v1 (batch 64, one thread), ~6 h where v1 took ~4.6 h; budget 11.5 h
    # (the issue allows 12). Not chosen yet: see benchmarks/diagnostics/ladder.md
    "v2-path": Preset(path_layers=2, budget_hours=11.5),
    # for a GPU (--device cuda)
    "large": Preset(
        hidden=256,
        latent=16,
        trunk_layers=6,
        encoder_layers=3,
        decoder_layers=3,
        batch_size=128,
        max_epochs=300,
        patience=15,
        val_molecules=1000,
        budget_hours=0.0,
    ),
}


# ----------------------------------------------------------------------------- data


@dataclass
class Example:
    """One training molecule: graph tensors and heavy-atom reference coordinates (N, 3)."""

    name: str
    graph: fz.MolGraph
    coords: torch.Tensor


def _load_records(path: Path) -> list:
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


def _check_exclusions(records: list, names_are_ccd_codes: bool) -> None:
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


def model_options(preset: Preset) -> dict[str, int]:
    """The architecture options a preset turns on (none for v1, whose config they would
    otherwise change)."""
    out = {}
    if preset.path_layers:
        out["path_layers"] = preset.path_layers
        out["path_iters"] = preset.path_iters
    if preset.global_latent:
        out["global_latent"] = preset.global_latent
    return out


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


# ------------------------------------------------------------------------- training


def batch_loss(
    model: torch.nn.Module, batch: Batch, preset: Preset, eps: torch.Tensor
) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss of one batch (means over its molecules) and its parts as floats.

    ``model`` is a :class:`ConfVAE` or its DistributedDataParallel wrapper;
    ``eps`` (N_atoms, latent) is the standard-normal noise of the posterior sample.
    """
    mu, log_sigma, kl_prior, kl_post = model(
        batch.atom_feat,
        batch.pair_feat,
        batch.pair_i,
        batch.pair_j,
        batch.inv_deg,
        batch.ref_dist,
        eps,
    )
    n_mol = batch.mask.shape[0]
    counts_p = torch.zeros(n_mol, device=mu.device).index_add_(
        0, batch.pair_mol, torch.ones_like(mu)
    )
    z = (torch.log(batch.ref_dist.clamp(min=1e-3)) - mu) / torch.exp(log_sigma)
    nll_pair = 0.5 * z.pow(2) + log_sigma
    nll = (
        torch.zeros(n_mol, device=mu.device).index_add_(0, batch.pair_mol, nll_pair) / counts_p
    ).mean()
    atom_mol = torch.repeat_interleave(
        torch.arange(n_mol, device=mu.device), batch.mask.sum(-1).long()
    )
    n_atoms = batch.mask.sum(-1)
    kl_p = torch.zeros(n_mol, device=mu.device).index_add_(0, atom_mol, kl_prior) / n_atoms
    kl_q = torch.zeros(n_mol, device=mu.device).index_add_(0, atom_mol, kl_post) / n_atoms
    # KL balancing + free bits: the prior always learns to match the posterior; the encoder
    # is charged for information only beyond `free_bits` nats per atom, which keeps the
    # latent in use (without it, the KL fell to 0.004 nats/atom: one conformer per graph).
    kl_loss = (
        preset.kl_balance * kl_p + (1 - preset.kl_balance) * kl_q.clamp(min=preset.free_bits)
    ).mean()
    kl_mean = kl_q.mean()

    dist = torch.exp(mu)
    d_dense = dense_pairs(dist, batch, 0.0)
    w_dense = dense_pairs(solver.stress_weights(dist, log_sigma).detach(), batch, 0.0)
    coords = solver.solve(
        d_dense, w_dense, batch.mask, steps=preset.solver_steps, grad_steps=preset.grad_steps
    )
    rmsd = solver.superpose_rmsd(coords, batch.ref_dense, batch.mask, allow_reflection=True)
    coord = rmsd.mean()
    loss = preset.coord_weight * coord + preset.dist_weight * nll + preset.beta * kl_loss
    return loss, {
        "loss": float(loss.detach()),
        "rmsd": float(coord.detach()),
        "nll": float(nll.detach()),
        "kl": float(kl_mean.detach()),
    }


def _unwrap(model: torch.nn.Module) -> ConfVAE:
    inner = model.module if hasattr(model, "module") else model  # DistributedDataParallel
    return cast(ConfVAE, inner)


def train_step(
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    examples: list[Example],
    preset: Preset,
    generator: torch.Generator,
    device: torch.device,
    rank: int = 0,
    world: int = 1,
) -> dict[str, float]:
    """One optimisation step on the global batch ``examples``.

    With ``world`` processes (DistributedDataParallel), this rank takes
    ``examples[rank::world]``. Every rank draws the noise of the whole global batch
    from the same generator state and keeps its own molecules' rows, and scales its
    loss by its share of the batch, so the averaged gradient, the step and the
    reported loss are those of one process on the whole batch (up to float rounding).
    Needs ``len(examples) >= world``. Returns the global loss parts.
    """
    sizes = [ex.graph.num_atoms for ex in examples]
    eps_all = torch.randn(sum(sizes), _unwrap(model).latent, generator=generator)
    mine = list(range(rank, len(examples), world))
    if world > 1:
        starts = np.concatenate([[0], np.cumsum(sizes)])
        eps = torch.cat([eps_all[starts[i] : starts[i + 1]] for i in mine])
    else:
        eps = eps_all
    batch = collate([examples[i] for i in mine]).to(device)
    loss, parts = batch_loss(model, batch, preset, eps.to(device))
    share = len(mine) / len(examples)
    opt.zero_grad()
    (loss * share * world).backward()  # DDP averages over ranks: sum_r share_r * grad_r
    torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
    opt.step()
    if world > 1:
        import torch.distributed as dist

        keys = sorted(parts)
        vec = torch.tensor([parts[k] * share for k in keys], dtype=torch.float64)
        dist.all_reduce(vec)
        parts = dict(zip(keys, vec.tolist(), strict=True))
    return parts


def _dist_env() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def _any_rank(flag: bool, world: int) -> bool:
    """True on every rank when ``flag`` is true on any (stop decisions must agree)."""
    if world == 1:
        return flag
    import torch.distributed as dist

    t = torch.tensor([1 if flag else 0])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


@torch.no_grad()
def validate(
    model: ConfVAE, examples: list[Example], samples: int, device: torch.device, seed: int = 0
) -> dict[str, float]:
    """Median / share < 1 A of the minimum RMSD of ``samples`` prior draws per molecule."""
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    best = []
    for ex in examples:
        g = ex.graph
        n = g.num_atoms
        inv = torch.full((n,), 1.0 / max(n - 1, 1), device=device)
        eps = torch.randn(samples, n, model.latent, generator=gen).to(device)
        dist, log_sigma = model.sample_distances(
            g.atom_feat.to(device),
            g.pair_feat.to(device),
            g.pair_i.to(device),
            g.pair_j.to(device),
            inv,
            eps,
            1.0,
        )
        coords = solver.solve_pairs(dist, log_sigma, g.pair_i.to(device), g.pair_j.to(device), n)
        mask = torch.ones(samples, n, device=device)
        ref = ex.coords.to(device).expand(samples, n, 3)
        rmsd = solver.superpose_rmsd(coords, ref, mask, allow_reflection=True)
        best.append(float(rmsd.min()))
    model.train()
    arr = np.asarray(best)
    return {
        "val_median_min_rmsd": float(np.median(arr)) if len(arr) else math.nan,
        "val_share_below_1A": float((arr < 1.0).mean()) if len(arr) else math.nan,
        "val_share_below_1_5A": float((arr < 1.5).mean()) if len(arr) else math.nan,
        "val_molecules": len(arr),
        "val_samples": samples,
    }


def _data_hash(examples: list[Example]) -> str:
    h = hashlib.sha256()
    for ex in examples:
        h.update(ex.name.encode())
        h.update(ex.coords.numpy().round(3).tobytes())
    return h.hexdigest()


def _git_commit() -> str:
    import subprocess

    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def train(
    data: Path,
    out: Path,
    preset_name: str = "default",
    resume: bool = False,
    device: str = "cpu",
    max_hours: float = 0.0,
    export_dir: Path | None = None,
    threads: int = 0,
    overrides: dict | None = None,
    export_only: bool = False,
    overwrite_shipped: bool = False,
) -> dict:
    """Train (or resume) a model; returns the final metrics. See the module docstring.

    ``export_only`` skips training and exports ``OUT/best.ckpt`` (e.g. after a run was
    stopped). SIGTERM / SIGINT stop training cleanly: checkpoint, then export.
    ``export_dir`` may not be the installed package's shipped weights unless
    ``overwrite_shipped`` (checked before training starts).
    """
    if export_dir is not None:
        from rdconfvae.export import check_export_dir

        check_export_dir(export_dir, overwrite_shipped)
    preset = Preset(**{**asdict(PRESETS[preset_name]), **(overrides or {})})
    rank, world, local_rank = _dist_env()
    own_group = False
    if threads:
        torch.set_num_threads(threads)
    elif world > 1 and device == "cpu":
        # processes share the cores: one torch thread each unless told otherwise
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    torch.manual_seed(preset.seed)
    random.seed(preset.seed)
    if world > 1:
        import torch.distributed as dist

        if device.startswith("cuda"):
            device = f"cuda:{local_rank}"
            torch.cuda.set_device(local_rank)
        own_group = not dist.is_initialized()
        if own_group:
            dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        if preset.batch_size < world:
            raise DataError(f"batch size {preset.batch_size} is smaller than {world} processes")
        if rank != 0:
            log.setLevel(logging.WARNING)
    dev = torch.device(device)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()

    records = _load_records(Path(data))
    _check_exclusions(records, names_are_ccd_codes=not str(data).endswith((".sdf", ".sdf.gz")))
    train_recs = [r for r in records if r.split != "val"]
    val_recs = [r for r in records if r.split == "val"]
    rng = np.random.default_rng(preset.seed)
    if preset.max_train_molecules:
        idx = rng.permutation(len(train_recs))[: preset.max_train_molecules]
        train_recs = [train_recs[i] for i in sorted(idx)]
    val_idx = np.random.default_rng(preset.seed + 1).permutation(len(val_recs))
    val_recs = [val_recs[i] for i in sorted(val_idx[: preset.val_molecules])]
    train_ex, skipped = featurize_records(train_recs, preset.max_heavy_atoms)
    val_ex, _ = featurize_records(val_recs, preset.max_heavy_atoms)
    if not train_ex or not val_ex:
        raise DataError(f"no usable training/validation molecules in {data}")
    log.info(
        "training on %d molecules, validating on %d (skipped: %s)",
        len(train_ex),
        len(val_ex),
        skipped or "none",
    )

    config = default_config(fz.ATOM_DIM, fz.PAIR_DIM)
    for key in ("hidden", "latent", "trunk_layers", "encoder_layers", "decoder_layers"):
        config[key] = getattr(preset, key)
    config.update(model_options(preset))
    model = ConfVAE(config).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=preset.lr, weight_decay=preset.weight_decay)
    net: torch.nn.Module = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        # same seed on every rank gives the same initial weights; DDP checks and
        # broadcasts them from rank 0 anyway
        ids = [local_rank] if dev.type == "cuda" else None
        # the last encoder layer's pair update feeds nothing: unused parameters
        net = DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=2)
    gen = torch.Generator().manual_seed(preset.seed)
    state: dict[str, Any] = {
        "epoch": 0,
        "step": 0,
        "best": math.inf,
        "bad_epochs": 0,
        "history": [],
        "elapsed_s": 0.0,
        "position": 0,
    }
    ckpt_path = out / "last.ckpt"
    if (resume or export_only) and ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location=dev, weights_only=True)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        gen.set_state(ckpt["generator"])
        state = json.loads(ckpt["state"])
        log.info("resumed from %s at epoch %d step %d", ckpt_path, state["epoch"], state["step"])

    clock = {"last": time.time()}  # wall time is accumulated across resumed sittings

    def save(path: Path) -> None:
        now = time.time()
        state["elapsed_s"] += now - clock["last"]
        clock["last"] = now
        if rank != 0:  # every rank keeps the same state; rank 0 writes it
            return
        tmp = path.with_suffix(".tmp")
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "generator": gen.get_state(),
                "state": json.dumps(state),
                "config": json.dumps(config),
                "preset": json.dumps(asdict(preset)),
            },
            tmp,
        )
        os.replace(tmp, path)

    from tqdm import tqdm

    deadline = t_start + max_hours * 3600 if max_hours > 0 else math.inf

    def budget_spent() -> bool:
        total = state["elapsed_s"] + time.time() - clock["last"]
        return preset.budget_hours > 0 and total > preset.budget_hours * 3600

    stopped_early = False
    last_ckpt = time.time()
    stop = {"requested": export_only}

    def request_stop(signum: int, frame: object) -> None:
        log.info("signal %d: stopping after this step (checkpoint, then export)", signum)
        stop["requested"] = True

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, request_stop)
    while (
        state["epoch"] < preset.max_epochs
        and state["bad_epochs"] < preset.patience
        and not stop["requested"]
    ):
        order = np.random.default_rng(preset.seed + 1000 + state["epoch"]).permutation(
            len(train_ex)
        )
        batches = [
            order[i : i + preset.batch_size] for i in range(0, len(order), preset.batch_size)
        ]
        if world > 1:  # every rank needs at least one molecule of each batch
            batches = [b for b in batches if len(b) >= world]
        bar = tqdm(
            total=len(batches),
            initial=state["position"],
            desc=f"epoch {state['epoch'] + 1}/{preset.max_epochs}",
            disable=None if rank == 0 else True,
            dynamic_ncols=True,
        )
        # the epoch's running (exponential) train averages live in the checkpointed state, so a
        # run stopped in the middle of an epoch reports the same train metrics after --resume
        running: dict[str, float] = state.get("running", {}) if state["position"] else {}
        state["running"] = running
        for bi in range(state["position"], len(batches)):
            parts = train_step(
                net, opt, [train_ex[i] for i in batches[bi]], preset, gen, dev, rank, world
            )
            state["step"] += 1
            state["position"] = bi + 1
            for k, v in parts.items():
                running[k] = 0.98 * running.get(k, v) + 0.02 * v
            bar.set_postfix({k: f"{v:.3f}" for k, v in running.items()})
            bar.update(1)
            if bar.disable and rank == 0 and state["step"] % 100 == 0:  # no terminal: log
                log.info(
                    "epoch %d step %d/%d %s",
                    state["epoch"] + 1,
                    bi + 1,
                    len(batches),
                    " ".join(f"{k}={v:.3f}" for k, v in running.items()),
                )
            if time.time() - last_ckpt > preset.checkpoint_minutes * 60:
                save(ckpt_path)
                last_ckpt = time.time()
            if _any_rank(time.time() > deadline or stop["requested"], world):
                stopped_early = True
                break
            if _any_rank(budget_spent(), world):
                break
        bar.close()
        if stopped_early:
            save(ckpt_path)
            log.info("time budget reached: checkpoint saved; continue with --resume")
            break
        metrics = {}
        if rank == 0:
            metrics = validate(model, val_ex, preset.val_samples, dev, seed=preset.seed)
        if world > 1:  # rank 0 validates; every rank takes the same decisions from it
            import torch.distributed as dist

            shared = [metrics]
            dist.broadcast_object_list(shared, src=0)
            metrics = shared[0]
        state["epoch"] += 1
        state["position"] = 0
        state.pop("running", None)
        metrics.update(
            {
                "epoch": state["epoch"],
                "step": state["step"],
                **{f"train_{k}": v for k, v in running.items()},
            }
        )
        state["history"].append(metrics)
        score = metrics["val_median_min_rmsd"]
        sched.step(score)
        log.info("epoch %d: %s", state["epoch"], json.dumps(metrics))
        if score < state["best"] - 1e-4:
            state["best"] = score
            state["bad_epochs"] = 0
            save(out / "best.ckpt")
        else:
            state["bad_epochs"] += 1
        save(ckpt_path)
        last_ckpt = time.time()
        if _any_rank(time.time() > deadline, world):
            stopped_early = True
            log.info("time budget reached after epoch %d; continue with --resume", state["epoch"])
            break
        if _any_rank(budget_spent(), world):
            log.info(
                "training budget of %.1f h spent after epoch %d",
                preset.budget_hours,
                state["epoch"],
            )
            break

    finished = (
        state["epoch"] >= preset.max_epochs
        or state["bad_epochs"] >= preset.patience
        or budget_spent()
    )
    result = {
        "finished": finished and not stopped_early,
        "epochs": state["epoch"],
        "steps": state["step"],
        "best_val_median_min_rmsd": state["best"],
        "train_molecules": len(train_ex),
        "val_molecules": len(val_ex),
        "data_hash": _data_hash(train_ex + val_ex),
        "wall_time_s": state["elapsed_s"],
    }
    if world > 1:
        import torch.distributed as dist

        dist.barrier()  # rank 0's checkpoints are on disk before anyone reads or exits
        result["world_size"] = world
    if export_dir is not None and rank == 0 and (out / "best.ckpt").exists():
        from rdconfvae.export import export_checkpoint

        best = torch.load(out / "best.ckpt", map_location="cpu", weights_only=True)
        best_state = json.loads(best["state"])
        val = best_state["history"][-1] if best_state["history"] else {}
        # the best checkpoint is saved right after the epoch that set it
        export_checkpoint(
            best,
            export_dir,
            training={
                "preset": preset_name,
                "preset_values": asdict(preset),
                "data": str(data),
                "data_hash": result["data_hash"],
                "train_molecules": len(train_ex),
                "val_molecules": len(val_ex),
                "epochs": best_state["epoch"],
                "steps": best_state["step"],
                "wall_time_s": best_state["elapsed_s"],
                "finished": result["finished"],
                "git_commit": _git_commit(),
                "command": " ".join(["python -m rdconfvae.train", *sys.argv[1:]]),
            },
            validation=val,
            overwrite_shipped=overwrite_shipped,
        )
        result["exported_to"] = str(export_dir)
    if own_group:
        import torch.distributed as dist

        dist.destroy_process_group()
    return result


def main(argv: list[str] | None = None, *, prog: str = "python -m rdconfvae.train") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="default")
    parser.add_argument(
        "--data",
        type=Path,
        default=Path("data_build/ccd"),
        help="CCD set directory (built there if missing) or an SDF with 3D records",
    )
    parser.add_argument("--out", type=Path, default=None, help="run directory (checkpoints)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.ckpt")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument(
        "--max-hours",
        type=float,
        default=0.0,
        help="stop cleanly after this much wall time (checkpointed; resume later)",
    )
    parser.add_argument(
        "--export",
        type=Path,
        default=None,
        help="export the best model + manifest here at the end (e.g. runs/default/export; "
        "use it with RDCONFVAE_WEIGHTS=DIR)",
    )
    parser.add_argument(
        "--overwrite-shipped-weights",
        action="store_true",
        help="allow --export to replace the installed package's own weights",
    )
    parser.add_argument("--max-epochs", type=int, default=None)
    parser.add_argument(
        "--export-only",
        action="store_true",
        help="no training: export OUT/best.ckpt to --export (after a stopped run)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    out = args.out or Path("runs") / args.preset
    overrides = {"max_epochs": args.max_epochs} if args.max_epochs else None
    try:
        result = train(
            args.data,
            out,
            args.preset,
            args.resume,
            args.device,
            args.max_hours,
            args.export,
            args.threads,
            overrides,
            args.export_only,
            args.overwrite_shipped_weights,
        )
    except RdConfVAEError as exc:
        print(f"rdconfvae.train: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

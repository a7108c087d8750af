"""The training loop: processes, data, model, epochs with checkpoints and early stopping, export.

Random numbers, in the order they are drawn (the same in every version, so a run is
reproducible bit for bit): ``torch.manual_seed(seed)`` and ``random.seed(seed)``; the training
subset (numpy, ``seed``) and the validation subset (numpy, ``seed + 1``); the model's initial
weights (torch's global generator); per epoch the batch order (numpy,
``seed + 1000 + epoch``) and per step the posterior noise (a torch generator seeded with
``seed`` and checkpointed); validation draws from its own generator (``seed``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from rdconfvae.errors import DataError
from rdconfvae.model.export import check_export_dir, export_checkpoint
from rdconfvae.model.network import ConfVAE
from rdconfvae.train.data import (
    Example,
    check_exclusions,
    checkpoint_selection,
    data_hash,
    featurize_records,
    load_records,
)
from rdconfvae.train.objective import cosine_lr, train_step, validate
from rdconfvae.train.presets import PRESETS, Preset, model_config
from rdconfvae.train.state import TrainState, load_checkpoint, save_checkpoint

__all__ = ["train"]

log = logging.getLogger(__name__)


def dist_env() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def any_rank(flag: bool, world: int) -> bool:
    """True on every rank when ``flag`` is true on any (stop decisions must agree)."""
    if world == 1:
        return flag
    import torch.distributed as dist

    t = torch.tensor([1 if flag else 0])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def git_commit() -> str:
    """The commit of the source tree the package runs from ("unknown" outside git)."""
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


def machine() -> str:
    """What the float rounding of a training step depends on: the CPU model, torch's version
    and vector code path, and the thread count (runs on different machines diverge from
    their first steps: benchmarks/diagnostics/reproduce_weights.md)."""
    cpu = platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            info: dict[str, str] = {}
            for line in fh:
                key, _, value = line.partition(":")
                info.setdefault(key.strip(), value.strip())
        if "model name" in info:
            cpu = f"{info['model name']} (family {info.get('cpu family', '?')} model "
            cpu += f"{info.get('model', '?')} stepping {info.get('stepping', '?')})"
    except OSError:
        pass
    capability = torch.backends.cpu.get_cpu_capability()
    return f"{cpu}; torch {torch.__version__} {capability}; {torch.get_num_threads()} threads"


@dataclass
class Processes:
    """This process's place in a torchrun job (rank 0 of 1 without torchrun)."""

    rank: int
    world: int
    local_rank: int
    device: str
    own_group: bool  # the process group was created here (and is destroyed at the end)


def start_processes(preset: Preset, device: str, threads: int) -> Processes:
    """Threads, the global seeds and, under torchrun, the process group."""
    rank, world, local_rank = dist_env()
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
            logging.getLogger("rdconfvae.train").setLevel(logging.WARNING)
    return Processes(rank, world, local_rank, device, own_group)


def select_examples(data: Path, preset: Preset) -> tuple[list[Example], list[Example]]:
    """Training and validation examples of ``data`` (subsets drawn with the preset's seed)."""
    records = load_records(Path(data))
    check_exclusions(records, names_are_ccd_codes=not str(data).endswith((".sdf", ".sdf.gz")))
    train_recs = [r for r in records if r.split != "val"]
    val_recs = [r for r in records if r.split == "val"]
    rng = np.random.default_rng(preset.seed)
    if preset.max_train_molecules:
        idx = rng.permutation(len(train_recs))[: preset.max_train_molecules]
        train_recs = [train_recs[i] for i in sorted(idx)]
    val_recs = [val_recs[i] for i in checkpoint_selection(len(val_recs), preset)]
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
    return train_ex, val_ex


class Sitting:
    """One sitting of a run: model, optimiser, scheduler, noise generator and progress."""

    def __init__(
        self, preset: Preset, out: Path, procs: Processes, dev: torch.device, stop: bool
    ) -> None:
        self.preset, self.out, self.procs, self.dev = preset, out, procs, dev
        self.config = model_config(preset)
        self.machine = machine()  # after start_processes has set the thread count
        self.model = ConfVAE(self.config).to(dev)
        self.opt = torch.optim.Adam(
            self.model.parameters(), lr=preset.lr, weight_decay=preset.weight_decay
        )
        self.net: torch.nn.Module = self.model
        if procs.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            # same seed on every rank gives the same initial weights; DDP checks and
            # broadcasts them from rank 0 anyway
            ids = [procs.local_rank] if dev.type == "cuda" else None
            # the last encoder layer's pair update feeds nothing: unused parameters
            self.net = DistributedDataParallel(
                self.model, device_ids=ids, find_unused_parameters=True
            )
        self.sched = torch.optim.lr_scheduler.ReduceLROnPlateau(self.opt, factor=0.5, patience=2)
        self.gen = torch.Generator().manual_seed(preset.seed)
        self.state = TrainState()
        self.ckpt_path = out / "last.ckpt"
        self.clock = time.time()  # wall time is accumulated across resumed sittings
        self.last_ckpt = time.time()
        self.stop_requested = stop

    def resume(self) -> None:
        """Continue from ``OUT/last.ckpt`` when there is one (of this preset's recipe)."""
        if self.ckpt_path.exists():
            self.state = load_checkpoint(
                self.ckpt_path, self.model, self.opt, self.sched, self.gen, self.dev, self.preset
            )
            log.info(
                "resumed from %s at epoch %d step %d",
                self.ckpt_path,
                self.state.epoch,
                self.state.step,
            )
        self.clock = time.time()

    def save(self, path: Path) -> None:
        now = time.time()
        self.state.elapsed_s += now - self.clock
        self.clock = now
        if self.procs.rank != 0:  # every rank keeps the same state; rank 0 writes it
            return
        save_checkpoint(
            path, self.model, self.opt, self.sched, self.gen, self.state, self.config, self.preset
        )

    def budget_spent(self) -> bool:
        total = self.state.elapsed_s + time.time() - self.clock
        return self.preset.budget_hours > 0 and total > self.preset.budget_hours * 3600

    def request_stop(self, signum: int, frame: object) -> None:
        log.info("signal %d: stopping after this step (checkpoint, then export)", signum)
        self.stop_requested = True

    def running(self) -> bool:
        s, p = self.state, self.preset
        return s.epoch < p.max_epochs and s.bad_epochs < p.patience and not self.stop_requested

    def train_epoch(self, train_ex: list[Example], deadline: float) -> bool:
        """The (rest of the) epoch in progress; True when stopped early (time or signal)."""
        state, preset, world, rank = self.state, self.preset, self.procs.world, self.procs.rank
        order = np.random.default_rng(preset.seed + 1000 + state.epoch).permutation(len(train_ex))
        batches = [
            order[i : i + preset.batch_size] for i in range(0, len(order), preset.batch_size)
        ]
        if world > 1:  # every rank needs at least one molecule of each batch
            batches = [b for b in batches if len(b) >= world]
        bar = tqdm(
            total=len(batches),
            initial=state.position,
            desc=f"epoch {state.epoch + 1}/{preset.max_epochs}",
            disable=None if rank == 0 else True,
            dynamic_ncols=True,
        )
        running: dict[str, float] = (state.running or {}) if state.position else {}
        state.running = running
        stopped_early = False
        total_steps = preset.max_epochs * len(batches)
        for bi in range(state.position, len(batches)):
            if preset.lr_schedule == "cosine":
                for group in self.opt.param_groups:
                    group["lr"] = cosine_lr(preset.lr, state.step / total_steps, preset.lr_final)
            parts = train_step(
                self.net,
                self.opt,
                [train_ex[i] for i in batches[bi]],
                preset,
                self.gen,
                self.dev,
                rank,
                world,
                autoencode=state.step < preset.ae_warmup_steps,
            )
            state.step += 1
            state.position = bi + 1
            for k, v in parts.items():
                running[k] = 0.98 * running.get(k, v) + 0.02 * v
            bar.set_postfix({k: f"{v:.3f}" for k, v in running.items()})
            bar.update(1)
            if bar.disable and rank == 0 and state.step % 100 == 0:  # no terminal: log
                log.info(
                    "epoch %d step %d/%d %s",
                    state.epoch + 1,
                    bi + 1,
                    len(batches),
                    " ".join(f"{k}={v:.3f}" for k, v in running.items()),
                )
            if time.time() - self.last_ckpt > preset.checkpoint_minutes * 60:
                self.save(self.ckpt_path)
                self.last_ckpt = time.time()
            if any_rank(time.time() > deadline or self.stop_requested, world):
                stopped_early = True
                break
            if any_rank(self.budget_spent(), world):
                break
        bar.close()
        return stopped_early

    def end_epoch(self, val_ex: list[Example]) -> None:
        """Validate, record the epoch, step the scheduler, checkpoint (best and last)."""
        state = self.state
        running = state.running or {}
        metrics: dict[str, Any] = {}
        if self.procs.rank == 0:
            metrics = validate(
                self.model, val_ex, self.preset.val_samples, self.dev, seed=self.preset.seed
            )
        if self.procs.world > 1:  # rank 0 validates; every rank takes the same decisions
            import torch.distributed as dist

            shared = [metrics]
            dist.broadcast_object_list(shared, src=0)
            metrics = shared[0]
        state.epoch += 1
        state.position = 0
        state.running = None
        metrics.update(
            {
                "epoch": state.epoch,
                "step": state.step,
                **{f"train_{k}": v for k, v in running.items()},
                "machine": self.machine,
            }
        )
        state.history.append(metrics)
        score = metrics["val_median_min_rmsd"]
        if self.preset.lr_schedule == "plateau":
            self.sched.step(score)
        log.info("epoch %d: %s", state.epoch, json.dumps(metrics))
        if score < state.best - 1e-4:
            state.best = score
            state.bad_epochs = 0
            self.save(self.out / "best.ckpt")
        else:
            state.bad_epochs += 1
        self.save(self.ckpt_path)
        self.last_ckpt = time.time()

    def run(self, train_ex: list[Example], val_ex: list[Example], deadline: float) -> bool:
        """Epochs until done, out of patience, out of budget or stopped; True when stopped
        early (time limit or signal: resume later)."""
        world = self.procs.world
        while self.running():
            if self.train_epoch(train_ex, deadline):
                self.save(self.ckpt_path)
                log.info("time budget reached: checkpoint saved; continue with --resume")
                return True
            self.end_epoch(val_ex)
            if any_rank(time.time() > deadline, world):
                log.info(
                    "time budget reached after epoch %d; continue with --resume", self.state.epoch
                )
                return True
            if any_rank(self.budget_spent(), world):
                log.info(
                    "training budget of %.1f h spent after epoch %d",
                    self.preset.budget_hours,
                    self.state.epoch,
                )
                break
        return False


def export_best(
    out: Path,
    export_dir: Path,
    preset_name: str,
    preset: Preset,
    data: Path,
    result: dict[str, Any],
    overwrite_shipped: bool,
) -> None:
    """Export ``OUT/best.ckpt`` with its training record (saved right after the epoch that
    set it, so its last history entry is its validation)."""
    best = torch.load(out / "best.ckpt", map_location="cpu", weights_only=True)
    best_state = TrainState.from_json(best["state"])
    val = best_state.history[-1] if best_state.history else {}
    export_checkpoint(
        best,
        export_dir,
        training={
            "preset": preset_name,
            "preset_values": asdict(preset),
            "data": str(data),
            "data_hash": result["data_hash"],
            "train_molecules": result["train_molecules"],
            "val_molecules": result["val_molecules"],
            "epochs": best_state.epoch,
            "steps": best_state.step,
            "wall_time_s": best_state.elapsed_s,
            "finished": result["finished"],
            "git_commit": git_commit(),
            # every machine that trained an epoch up to the exported one (older checkpoints
            # did not record it)
            "machines": sorted({h["machine"] for h in best_state.history if "machine" in h}),
            "command": " ".join(["python -m rdconfvae.train", *sys.argv[1:]]),
        },
        validation=val,
        overwrite_shipped=overwrite_shipped,
    )


def train(
    data: Path,
    out: Path,
    preset_name: str = "default",
    resume: bool = False,
    device: str = "cpu",
    max_hours: float = 0.0,
    export_dir: Path | None = None,
    threads: int = 0,
    overrides: dict[str, Any] | None = None,
    export_only: bool = False,
    overwrite_shipped: bool = False,
) -> dict[str, Any]:
    """Train (or resume) a model; returns the final metrics. See :mod:`rdconfvae.train`.

    ``export_only`` skips training and exports ``OUT/best.ckpt`` (e.g. after a run was
    stopped). SIGTERM / SIGINT stop training cleanly: checkpoint, then export; the
    handlers that were there before are restored when training ends.
    ``export_dir`` may not be the installed package's shipped weights unless
    ``overwrite_shipped`` (checked before training starts).
    """
    if export_dir is not None:
        check_export_dir(export_dir, overwrite_shipped)
    preset = Preset(**{**asdict(PRESETS[preset_name]), **(overrides or {})})
    procs = start_processes(preset, device, threads)
    dev = torch.device(procs.device)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    train_ex, val_ex = select_examples(data, preset)

    sitting = Sitting(preset, out, procs, dev, stop=export_only)
    if resume or export_only:
        sitting.resume()
    deadline = t_start + max_hours * 3600 if max_hours > 0 else math.inf
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, sitting.request_stop)
    try:
        stopped_early = sitting.run(train_ex, val_ex, deadline)
    finally:  # the caller's handlers back (a notebook's Ctrl-C, a test process's)
        for sig, handler in previous.items():
            if handler is not None:
                signal.signal(sig, handler)

    state = sitting.state
    finished = (
        state.epoch >= preset.max_epochs
        or state.bad_epochs >= preset.patience
        or sitting.budget_spent()
    )
    result: dict[str, Any] = {
        "finished": finished and not stopped_early,
        "epochs": state.epoch,
        "steps": state.step,
        "best_val_median_min_rmsd": state.best,
        "train_molecules": len(train_ex),
        "val_molecules": len(val_ex),
        "data_hash": data_hash(train_ex + val_ex),
        "wall_time_s": state.elapsed_s,
    }
    if procs.world > 1:
        import torch.distributed as dist

        dist.barrier()  # rank 0's checkpoints are on disk before anyone reads or exits
        result["world_size"] = procs.world
    if export_dir is not None and procs.rank == 0 and (out / "best.ckpt").exists():
        export_best(out, export_dir, preset_name, preset, data, result, overwrite_shipped)
        result["exported_to"] = str(export_dir)
    if procs.own_group:
        import torch.distributed as dist

        dist.destroy_process_group()
    return result

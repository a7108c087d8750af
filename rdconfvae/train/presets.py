"""Training presets: the hyper-parameters of a run and the architecture options they turn on."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from rdconfvae.model import featurize as fz
from rdconfvae.model.network import default_config

LR_SCHEDULES = ("plateau", "cosine")


@dataclass
class Preset:
    """Training hyper-parameters (architecture sizes go into the model config)."""

    hidden: int = 96
    latent: int = 8
    trunk_layers: int = 3
    encoder_layers: int = 2
    decoder_layers: int = 2
    # architecture options of rdconfvae.model.network (0: the v1 architecture); see its docstring
    path_layers: int = 0
    path_iters: int = 1
    global_latent: int = 0
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    # "plateau" (v1): halve the learning rate when validation stalls for 2 epochs;
    # "cosine": anneal it every step from lr to lr * lr_final over max_epochs
    lr_schedule: str = "plateau"
    lr_final: float = 0.05
    # the first steps train an autoencoder (latent = posterior mean, no information cost to
    # the encoder; the prior still regresses onto the posterior): the latent is in use from
    # the start instead of collapsing first (benchmarks/diagnostics/ladder.md, rung ae600-vae)
    ae_warmup_steps: int = 0
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

    def __post_init__(self) -> None:
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule {self.lr_schedule!r} is not one of {LR_SCHEDULES}")


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
    # v2 candidate (issue 17): the v1 architecture trained longer and to the end of a fixed
    # schedule: an autoencoder warm-up (~1 epoch), then 60 epochs with a cosine-annealed
    # learning rate and no early stop (v1 stopped by patience at epoch 36, best at 29, while
    # its training RMSD, 0.83 A, was still near its validation score: it underfits; see the
    # capacity test in benchmarks/diagnostics/ladder.md). ~5 min an epoch on 2 idle cores
    # (~5 h in all); budget 11.5 h. Carried across sittings in benchmarks/training/v2-long/
    "v2-long": Preset(
        lr_schedule="cosine", max_epochs=60, patience=60, ae_warmup_steps=500, budget_hours=11.5
    ),
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


# fields a resumed run may change: how long it runs and how often it saves. With the plateau
# schedule a finished or stopped run may also be extended (--max-epochs, patience); under the
# cosine schedule max_epochs sets the learning rate of every step and may not change.
RESUMABLE_CHANGES = ("budget_hours", "checkpoint_minutes", "max_epochs", "patience")


def resume_conflicts(saved: dict, preset: Preset) -> list[str]:
    """The recipe fields in which ``preset`` differs from a checkpoint's ``saved`` preset
    (its ``preset`` JSON), as "name: saved -> now"; empty when the run may go on.

    A field missing from an older checkpoint had its default then. Only
    :data:`RESUMABLE_CHANGES` may differ, and ``max_epochs`` not under a cosine schedule.
    """
    defaults = asdict(Preset())
    now = asdict(preset)
    free = set(RESUMABLE_CHANGES)
    if now["lr_schedule"] == "cosine":
        free.discard("max_epochs")
    out = []
    for name, value in now.items():
        old = saved.get(name, defaults[name])
        if name not in free and old != value:
            out.append(f"{name}: {old!r} -> {value!r}")
    return out


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


def model_config(preset: Preset) -> dict[str, float]:
    """The network config a preset trains: the featurizer's sizes, the preset's widths and
    depths, and its architecture options."""
    config = default_config(fz.ATOM_DIM, fz.PAIR_DIM)
    for key in ("hidden", "latent", "trunk_layers", "encoder_layers", "decoder_layers"):
        config[key] = getattr(preset, key)
    config.update(model_options(preset))
    return config

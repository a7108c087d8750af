"""Export a trained checkpoint as TorchScript + state dict + manifest.

Three files travel together: ``confvae.pt`` (TorchScript, what inference loads),
``confvae.safetensors`` (the same parameters as a plain state dict, for when torch
drops TorchScript: load it into :class:`rdconfvae.model.network.ConfVAE`) and
``manifest.json`` (sha256 of both files, model config, featurizer version and
feature sizes, allowed elements and size limit, training data hash, git commit,
validation metrics and library versions). :mod:`rdconfvae.model.store` refuses a
file whose hash, format or featurizer does not match.

The installed package's own weights are never overwritten by accident: exporting
into them needs ``overwrite_shipped=True`` (``--overwrite-shipped-weights``).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch

from rdconfvae.errors import WeightsError
from rdconfvae.hashing import sha256_file
from rdconfvae.model import featurize as fz
from rdconfvae.model.network import ConfVAE
from rdconfvae.model.store import CHECKOUT_WEIGHTS_DIR, installed_weights_dir

__all__ = [
    "MODEL_FILE",
    "STATE_DICT_FILE",
    "MANIFEST_FILE",
    "INFERENCE",
    "check_export_dir",
    "export_checkpoint",
    "script_model",
    "shipped_weights_dirs",
]

MODEL_FILE = "confvae.pt"
STATE_DICT_FILE = "confvae.safetensors"
MANIFEST_FILE = "manifest.json"

#: Inference settings shipped with the weights (the embed module reads them).
INFERENCE = {"temperature": 1.0, "solver_steps": 30}


def shipped_weights_dirs() -> list[Path]:
    """The directories holding the package's own weights (resolved): the installed
    ``rdconfvae.weights`` package and, in a source checkout, its ``weights/`` folder."""
    found = [CHECKOUT_WEIGHTS_DIR]
    installed = installed_weights_dir()
    if installed is not None:
        found.append(installed.resolve())
    return [d for i, d in enumerate(found) if (d / MANIFEST_FILE).exists() and d not in found[:i]]


def check_export_dir(out_dir: str | Path, overwrite_shipped: bool = False) -> None:
    """Raise :class:`WeightsError` if ``out_dir`` is the package's shipped weights
    directory and ``overwrite_shipped`` is not set.

    >>> check_export_dir("runs/default/export")  # anywhere else is fine
    """
    target = Path(out_dir).resolve()
    if not overwrite_shipped and target in shipped_weights_dirs():
        raise WeightsError(
            f"{target} holds the shipped weights of the installed rdconfvae: export elsewhere "
            "(e.g. --export runs/default/export, then RDCONFVAE_WEIGHTS=runs/default/export) "
            "or pass overwrite_shipped=True (--overwrite-shipped-weights) to replace them"
        )


def script_model(model: ConfVAE) -> torch.jit.ScriptModule:
    """TorchScript-compile ``model`` (eval mode). torch 2.13 warns that
    ``torch.jit.script`` is deprecated; the product promises a TorchScript file,
    so the warning is silenced here and the file is tested with ``torch.jit.load``."""
    model = model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.script(model)


def save_state_dict(model: torch.nn.Module, path: str | Path) -> str:
    """Write ``model``'s parameters and buffers as safetensors; return the file's sha256."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(path), metadata={"format": "pt"})
    return sha256_file(path)


def export_checkpoint(
    checkpoint: dict[str, Any],
    out_dir: str | Path,
    training: dict[str, Any],
    validation: dict[str, Any],
    overwrite_shipped: bool = False,
) -> Path:
    """Write ``MODEL_FILE``, ``STATE_DICT_FILE`` and ``MANIFEST_FILE`` into ``out_dir``;
    return the manifest path.

    Raises:
        WeightsError: ``out_dir`` is the shipped weights directory and
            ``overwrite_shipped`` is False (nothing is written).
    """
    import rdkit

    check_export_dir(out_dir, overwrite_shipped)
    config = json.loads(checkpoint["config"])
    model = ConfVAE(config)
    model.load_state_dict(checkpoint["model"])
    scripted = script_model(model)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model_path = out_dir / MODEL_FILE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(scripted, str(model_path))
    state_sha = save_state_dict(model, out_dir / STATE_DICT_FILE)
    manifest = {
        "format": 1,
        "model_file": MODEL_FILE,
        "sha256": sha256_file(model_path),
        "state_dict_file": STATE_DICT_FILE,
        "state_dict_sha256": state_sha,
        "model_config": config,
        "featurizer": {
            "version": fz.FEATURIZER_VERSION,
            "atom_dim": fz.ATOM_DIM,
            "pair_dim": fz.PAIR_DIM,
            "elements": list(fz.ELEMENTS),
            "max_heavy_atoms": fz.MAX_HEAVY_ATOMS,
        },
        "inference": INFERENCE,
        "training": training,
        "validation": validation,
        "versions": {"torch": torch.__version__, "rdkit": rdkit.__version__},
    }
    manifest_path = out_dir / MANIFEST_FILE
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest_path

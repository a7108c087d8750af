"""Export a trained checkpoint as TorchScript + manifest into ``weights/``.

The manifest travels with the model file: sha256 of the file, model config,
featurizer version and feature sizes, allowed elements and size limit,
training data hash, git commit, validation metrics and library versions.
:mod:`rdconfvae.modelstore` refuses a file whose hash or featurizer does not match.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from rdconfvae import featurize as fz
from rdconfvae.hashing import sha256_file
from rdconfvae.model import ConfVAE

__all__ = ["MODEL_FILE", "MANIFEST_FILE", "export_checkpoint", "script_model", "INFERENCE"]

MODEL_FILE = "confvae.pt"
MANIFEST_FILE = "manifest.json"

#: Inference settings shipped with the weights (the embed module reads them).
INFERENCE = {"temperature": 1.0, "solver_steps": 30}


def script_model(model: ConfVAE) -> torch.jit.ScriptModule:
    """TorchScript-compile ``model`` (eval mode). torch 2.13 warns that
    ``torch.jit.script`` is deprecated; the product promises a TorchScript file,
    so the warning is silenced here and the file is tested with ``torch.jit.load``."""
    model = model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.script(model)


def export_checkpoint(checkpoint: dict, out_dir: Path, training: dict, validation: dict) -> Path:
    """Write ``MODEL_FILE`` and ``MANIFEST_FILE`` into ``out_dir``; return the manifest path."""
    import rdkit

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
    manifest = {
        "format": 1,
        "model_file": MODEL_FILE,
        "sha256": sha256_file(model_path),
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

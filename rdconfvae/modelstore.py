"""Find, verify and load the shipped TorchScript model (package data ``rdconfvae.weights``).

Loaded once per process and shared between threads (inference does not
mutate the module). ``RDCONFVAE_WEIGHTS`` may point at another directory
holding a ``confvae.pt`` + ``manifest.json`` pair, e.g. a freshly trained model.
"""

from __future__ import annotations

import json
import os
import threading
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch

from rdconfvae import featurize as fz
from rdconfvae.errors import WeightsError
from rdconfvae.hashing import sha256_file

__all__ = ["LoadedModel", "load_model", "weights_dir", "clear_cache"]

_lock = threading.Lock()
_cache: dict[str, LoadedModel] = {}


@dataclass(frozen=True)
class LoadedModel:
    """The scripted model with its manifest."""

    module: torch.jit.ScriptModule
    manifest: dict
    path: Path

    @property
    def latent(self) -> int:
        return int(self.manifest["model_config"]["latent"])


def weights_dir() -> Path:
    """Directory of the weights in use: ``$RDCONFVAE_WEIGHTS`` or the package's own."""
    env = os.environ.get("RDCONFVAE_WEIGHTS")
    if env:
        return Path(env)
    try:
        return Path(str(resources.files("rdconfvae.weights")))
    except ModuleNotFoundError:  # a source checkout on sys.path, not installed
        return Path(__file__).resolve().parents[1] / "weights"


def _verify(path: Path, manifest: dict) -> None:
    feat = manifest.get("featurizer", {})
    if (
        feat.get("version") != fz.FEATURIZER_VERSION
        or feat.get("atom_dim") != fz.ATOM_DIM
        or (feat.get("pair_dim") != fz.PAIR_DIM)
    ):
        raise WeightsError(
            f"{path}: weights were trained with featurizer {feat.get('version')} "
            f"(atom_dim {feat.get('atom_dim')}, pair_dim {feat.get('pair_dim')}); this package "
            f"has featurizer {fz.FEATURIZER_VERSION} ({fz.ATOM_DIM}, {fz.PAIR_DIM})"
        )
    h = sha256_file(path)
    if h != manifest.get("sha256"):
        raise WeightsError(
            f"{path}: sha256 {h[:12]}... does not match the manifest "
            f"({str(manifest.get('sha256'))[:12]}...): the file is corrupted or replaced"
        )


def load_model(directory: Path | None = None) -> LoadedModel:
    """Load (once) and verify the model in ``directory`` (default: :func:`weights_dir`)."""
    directory = Path(directory) if directory is not None else weights_dir()
    key = str(directory.resolve())
    with _lock:
        if key in _cache:
            return _cache[key]
        manifest_path = directory / "manifest.json"
        if not manifest_path.exists():
            raise WeightsError(
                f"no manifest.json in {directory}: train and export a model "
                "(python -m rdconfvae.train --export DIR) or reinstall rdconfvae"
            )
        try:
            manifest = json.loads(manifest_path.read_text())
        except json.JSONDecodeError as exc:
            raise WeightsError(f"{manifest_path}: not valid JSON ({exc})") from exc
        model_path = directory / manifest.get("model_file", "confvae.pt")
        if not model_path.exists():
            raise WeightsError(f"{model_path} is missing")
        _verify(model_path, manifest)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.jit.load(str(model_path), map_location="cpu")
        module.eval()
        loaded = LoadedModel(module, manifest, model_path)
        _cache[key] = loaded
        return loaded


def clear_cache() -> None:
    """Forget loaded models (tests, or after replacing the weights on disk)."""
    with _lock:
        _cache.clear()

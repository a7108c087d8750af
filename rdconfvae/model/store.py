"""Find, verify and load the shipped model (package data ``rdconfvae.weights``).

Inference uses the TorchScript file (:func:`load_model`); the same parameters ship as a
safetensors state dict for the eager model (:func:`load_state_dict_model`). Every file
is checked against ``manifest.json`` (sha256, featurizer) before it is read.

Loaded once per process and shared between threads (inference does not
mutate the module). ``RDCONFVAE_WEIGHTS`` may point at another directory
holding an exported model (``confvae.pt``, ``confvae.safetensors``, ``manifest.json``),
e.g. a freshly trained one.
"""

from __future__ import annotations

import json
import os
import threading
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from rdconfvae.errors import WeightsError
from rdconfvae.hashing import sha256_file
from rdconfvae.model import featurize as fz

if TYPE_CHECKING:
    from rdconfvae.model.network import ConfVAE

__all__ = [
    "LoadedModel",
    "load_model",
    "load_state_dict_model",
    "weights_dir",
    "installed_weights_dir",
    "CHECKOUT_WEIGHTS_DIR",
    "clear_cache",
    "loaded_count",
    "reset_lock_after_fork",
]

_lock = threading.Lock()
_cache: dict[str, LoadedModel] = {}


@dataclass(frozen=True)
class LoadedModel:
    """The scripted model with its manifest."""

    module: torch.jit.ScriptModule
    manifest: dict[str, Any]
    path: Path

    @property
    def latent(self) -> int:
        return int(self.manifest["model_config"]["latent"])


#: The ``weights/`` folder of a source checkout (beside the ``rdconfvae/`` package).
CHECKOUT_WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "weights"


def installed_weights_dir() -> Path | None:
    """The installed package data ``rdconfvae.weights``; ``None`` in a source checkout on
    ``sys.path`` that is not installed."""
    try:
        return Path(str(resources.files("rdconfvae.weights")))
    except ModuleNotFoundError:
        return None


def weights_dir() -> Path:
    """Directory of the weights in use: ``$RDCONFVAE_WEIGHTS`` or the package's own."""
    env = os.environ.get("RDCONFVAE_WEIGHTS")
    if env:
        return Path(env)
    return installed_weights_dir() or CHECKOUT_WEIGHTS_DIR


def _read_manifest(directory: Path) -> dict[str, Any]:
    manifest_path = directory / "manifest.json"
    if not manifest_path.exists():
        raise WeightsError(
            f"{manifest_path} is missing: train and export a model "
            "(python -m rdconfvae.train --export DIR) or reinstall rdconfvae"
        )
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise WeightsError(f"{manifest_path}: not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != 1:
        raise WeightsError(f"{manifest_path}: unknown manifest format (expected format 1)")
    feat = manifest.get("featurizer", {})
    if (
        feat.get("version") != fz.FEATURIZER_VERSION
        or feat.get("atom_dim") != fz.ATOM_DIM
        or (feat.get("pair_dim") != fz.PAIR_DIM)
    ):
        raise WeightsError(
            f"{manifest_path}: featurizer check failed: weights were trained with featurizer "
            f"{feat.get('version')} (atom_dim {feat.get('atom_dim')}, pair_dim "
            f"{feat.get('pair_dim')}); this package has featurizer {fz.FEATURIZER_VERSION} "
            f"({fz.ATOM_DIM}, {fz.PAIR_DIM})"
        )
    config = manifest.get("model_config", {})
    if config.get("atom_dim") != fz.ATOM_DIM or config.get("pair_dim") != fz.PAIR_DIM:
        raise WeightsError(
            f"{manifest_path}: model_config check failed: atom_dim {config.get('atom_dim')}, "
            f"pair_dim {config.get('pair_dim')} do not match the featurizer "
            f"({fz.ATOM_DIM}, {fz.PAIR_DIM})"
        )
    return manifest


def _verify_file(directory: Path, manifest: dict[str, Any], file_key: str, sha_key: str) -> Path:
    """The path of the manifest's ``file_key`` entry, after its sha256 check."""
    name = manifest.get(file_key)
    expected = manifest.get(sha_key)
    if not isinstance(name, str) or not isinstance(expected, str):
        raise WeightsError(
            f"{directory / 'manifest.json'}: manifest check failed: no {file_key!r} / "
            f"{sha_key!r} entry"
        )
    path = directory / name
    if not path.is_file():
        raise WeightsError(f"{path} is missing (listed in {directory / 'manifest.json'})")
    h = sha256_file(path)
    if h != expected:
        raise WeightsError(
            f"{path}: sha256 check failed: {h[:12]}... does not match the manifest "
            f"({expected[:12]}...): the file is truncated, corrupted or replaced"
        )
    return path


def load_model(directory: Path | None = None) -> LoadedModel:
    """Load (once) and verify the TorchScript model in ``directory`` (default:
    :func:`weights_dir`).

    Raises:
        WeightsError: the manifest or the model file is missing, the manifest does not
            match this package's featurizer, the file's sha256 differs from the manifest's,
            or the file is not a TorchScript archive. The message names the file and check.
    """
    directory = Path(directory) if directory is not None else weights_dir()
    key = str(directory.resolve())
    with _lock:
        if key in _cache:
            return _cache[key]
        manifest = _read_manifest(directory)
        manifest.setdefault("model_file", "confvae.pt")
        model_path = _verify_file(directory, manifest, "model_file", "sha256")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                warnings.simplefilter("ignore", FutureWarning)
                module = torch.jit.load(str(model_path), map_location="cpu")
        except (RuntimeError, ValueError) as exc:
            raise WeightsError(
                f"{model_path}: TorchScript load failed: {str(exc).splitlines()[0]}"
            ) from exc
        module.eval()
        loaded = LoadedModel(module, manifest, model_path)
        _cache[key] = loaded
        return loaded


def load_state_dict_model(directory: Path | None = None) -> tuple[ConfVAE, dict[str, Any]]:
    """The eager :class:`~rdconfvae.model.network.ConfVAE` built from the manifest's config and
    the shipped state dict (``confvae.safetensors``), with the manifest.

    The TorchScript file and this state dict hold the same parameters (tested); this
    path does not need TorchScript. Not cached: each call builds a new module.

    Raises:
        WeightsError: as :func:`load_model`, for the state-dict file; also when its
            tensors do not fit the manifest's model config.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from rdconfvae.model.network import ConfVAE

    directory = Path(directory) if directory is not None else weights_dir()
    manifest = _read_manifest(directory)
    path = _verify_file(directory, manifest, "state_dict_file", "state_dict_sha256")
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{path}: safetensors load failed: {exc}") from exc
    model = ConfVAE(manifest["model_config"])
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(
            f"{path}: state dict check failed: does not fit the manifest's model_config "
            f"({str(exc).splitlines()[0]})"
        ) from exc
    return model.eval(), manifest


def clear_cache() -> None:
    """Forget loaded models (tests, or after replacing the weights on disk)."""
    with _lock:
        _cache.clear()


def loaded_count() -> int:
    """How many models this process holds loaded (one per weights folder)."""
    return len(_cache)


def reset_lock_after_fork() -> None:
    """A fresh cache lock in a forked child: a copy of a lock the parent held when it forked
    would never be released."""
    global _lock
    _lock = threading.Lock()

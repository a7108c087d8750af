"""rdconfvae: a ConfVAE conformer generator that drops into RDKit scripts.

>>> import rdconfvae
>>> from rdkit import Chem
>>> mol = Chem.AddHs(Chem.MolFromSmiles("CC(=O)Oc1ccccc1C(=O)O"))
>>> ids = rdconfvae.EmbedMultipleConfs(mol, 5, randomSeed=42)   # like AllChem's
>>> ids = rdconfvae.embed(mol, n=5, mmff=True, seed=42)          # Pythonic form

Heavy modules (torch, the model) load on first use, so ``import rdconfvae``
stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "embed": "rdconfvae.api",
    "EmbedMultipleConfs": "rdconfvae.api",
    "EmbedMolecule": "rdconfvae.api",
    "constrained_embed": "rdconfvae.constrained",
    "GENERATOR_PROP": "rdconfvae.api",
    "FallbackWarning": "rdconfvae.api",
    "EmbedParameters": "rdconfvae.params",
    "load_model": "rdconfvae.model.store",
    "mmff_minimize": "rdconfvae.forcefield.mmff",
}
_ERRORS = (
    "RdConfVAEError",
    "InvalidInputError",
    "UnsupportedMoleculeError",
    "MoleculeTooLargeError",
    "EmbeddingFailedError",
    "EmbeddingTimeoutError",
    "WeightsError",
    "DataError",
)
for _name in _ERRORS:
    _LAZY[_name] = "rdconfvae.errors"

__all__ = sorted(_LAZY) + ["__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from rdconfvae.api import (  # noqa: F401
        GENERATOR_PROP,
        EmbedMolecule,
        EmbedMultipleConfs,
        FallbackWarning,
        embed,
    )
    from rdconfvae.constrained import constrained_embed  # noqa: F401
    from rdconfvae.errors import *  # noqa: F403
    from rdconfvae.forcefield.mmff import mmff_minimize  # noqa: F401
    from rdconfvae.model.store import load_model  # noqa: F401
    from rdconfvae.params import EmbedParameters  # noqa: F401


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'rdconfvae' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__

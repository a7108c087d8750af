"""Errors raised by rdconfvae.

Every error derives from :class:`RdConfVAEError` and from the builtin exception
users already catch (``ValueError`` for bad input, ``RuntimeError`` for internal
failures), so ``except ValueError`` keeps working in existing RDKit scripts.
"""

from __future__ import annotations

__all__ = [
    "RdConfVAEError",
    "InvalidInputError",
    "UnsupportedMoleculeError",
    "MoleculeTooLargeError",
    "EmbeddingFailedError",
    "EmbeddingTimeoutError",
    "WeightsError",
    "DataError",
]


class RdConfVAEError(Exception):
    """Base class of every error raised by rdconfvae."""


class InvalidInputError(RdConfVAEError, ValueError):
    """The input is not a usable molecule or an argument is out of range."""


class UnsupportedMoleculeError(RdConfVAEError, ValueError):
    """The molecule holds an element or feature the model was not trained on."""


class MoleculeTooLargeError(UnsupportedMoleculeError):
    """The molecule has more heavy atoms than the model's size limit."""


class EmbeddingFailedError(RdConfVAEError, RuntimeError):
    """No conformer passing the checks (stereo, geometry) could be produced."""


class EmbeddingTimeoutError(EmbeddingFailedError, TimeoutError):
    """The per-molecule time limit ran out."""


class WeightsError(RdConfVAEError, RuntimeError):
    """Shipped weights are missing, corrupted or do not match their manifest."""


class DataError(RdConfVAEError, ValueError):
    """A training or benchmark data file is malformed, or a checkpoint does not fit the run."""

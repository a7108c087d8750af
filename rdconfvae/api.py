"""Public embedding API: :func:`embed`, :func:`EmbedMultipleConfs` and :func:`EmbedMolecule`.

Both call the same engine (:func:`rdconfvae.embedding.engine.generate`; the stages are listed
there), differing only in their argument conventions and in how a failure is
reported: ``embed`` raises, ``EmbedMultipleConfs`` returns RDKit's empty list.
Out-of-domain molecules go to RDKit's ETKDGv3 with ``fallback="etkdg"``
(:mod:`rdconfvae.embedding.fallback`). On any failure the caller's molecule keeps exactly the
conformers it had.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from rdkit import Chem

from rdconfvae.deadline import Deadline
from rdconfvae.embedding.attach import GENERATOR_PROP
from rdconfvae.embedding.engine import generate, validate_mol
from rdconfvae.embedding.fallback import FallbackWarning, embed_etkdg
from rdconfvae.errors import (
    EmbeddingFailedError,
    InvalidInputError,
    RdConfVAEError,
    UnsupportedMoleculeError,
)
from rdconfvae.params import (
    ALIASES,
    EmbedParameters,
    Fallback,
    check_count,
    to_params,
    validate,
)

__all__ = ["embed", "EmbedMultipleConfs", "EmbedMolecule", "GENERATOR_PROP", "FallbackWarning"]

log = logging.getLogger(__name__)


def _dispatch(mol: Chem.Mol, n: int, opts: EmbedParameters) -> list[int]:
    validate(opts)
    mmff = bool(opts.mmff)
    deadline = Deadline(float(opts.timeout) if opts.timeout else None)  # one limit for both
    try:
        return generate(mol, n, opts, mmff, deadline)
    except UnsupportedMoleculeError as exc:
        if opts.fallback != "etkdg":
            raise
        reason = str(exc)
    return embed_etkdg(mol, n, opts, mmff, reason, deadline=deadline)


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
    fallback: Fallback = "raise",
    params: EmbedParameters | Any | None = None,
    coord_map: Mapping[int, Any] | None = None,
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
        coord_map: RDKit's ``coordMap``, ``{atom index: Point3D}``: every conformer has
            these (heavy) atoms exactly at these coordinates
            (:mod:`rdconfvae.embedding.constraints`).

    Raises:
        InvalidInputError: ``mol`` is None, empty or does not sanitize; ``n`` is not a
            positive integer; an option has the wrong type or value (the message names it);
            a ``coord_map`` with a bad index or value, a hydrogen, or distances outside
            RDKit's bounds.
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
    if coord_map is not None:
        opts.coordMap = coord_map
    validate(opts, ALIASES)
    validate_mol(mol)
    n = check_count(n, "n")
    if n <= 0:
        raise InvalidInputError(f"n (number of conformers) must be positive, got {n}")
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
    ``numThreads``, ``enforceChirality``, ``timeout`` and ``coordMap`` (fixed atoms,
    :mod:`rdconfvae.embedding.constraints`) are honoured; RDKit's
    other fields are accepted and ignored. Keyword arguments use RDKit's names
    (``randomSeed=42``, ``pruneRmsThresh=0.5``, ...) plus ours (``mmff``,
    ``polishIters``, ``dielectric``, ``fallback``, ``temperature``, ``maxAttempts``); an unknown
    keyword raises ``TypeError``.

    Returns the ids of the conformers added; on embedding failure a shorter or
    empty list (never -1) and ``mol`` unchanged. Out-of-domain molecules fall
    back to ETKDGv3 (``fallback="etkdg"`` is the default here); with
    ``fallback="raise"`` they raise :class:`UnsupportedMoleculeError`. A ``None``
    molecule, a non-integer ``numConfs`` or an option of the wrong type or value raises
    :class:`InvalidInputError` naming it (RDKit raises too).
    """
    if isinstance(params, int) and not isinstance(params, bool):
        kwargs.setdefault("maxAttempts", params)  # RDKit's third positional argument
        params = None
    opts = to_params(params)
    for key, value in kwargs.items():
        if key not in EmbedParameters.__slots__:
            raise TypeError(f"EmbedMultipleConfs() got an unexpected keyword argument {key!r}")
        setattr(opts, key, value)
    validate_mol(mol)
    if check_count(numConfs, "numConfs") <= 0:
        return []
    try:
        return _dispatch(mol, int(numConfs), opts)
    except UnsupportedMoleculeError as exc:
        if opts.fallback == "raise":  # asked for explicitly: out of domain is an error
            raise
        log.warning("EmbedMultipleConfs: no conformers: %s", exc)
        return []
    except EmbeddingFailedError as exc:
        log.warning("EmbedMultipleConfs: no conformers: %s", exc)
        return []
    except RdConfVAEError:
        raise


#: RDKit ``EmbedMolecule`` keywords that are no ``EmbedParameters`` field: accepted, ignored.
_EMBED_MOLECULE_IGNORED = ("forceTol", "printExpTorsionAngles")


def EmbedMolecule(mol: Chem.Mol, params: Any = None, **kwargs: Any) -> int:  # noqa: N802, N803
    """Drop-in for ``AllChem.EmbedMolecule``: one conformer; its id, or -1 on failure.

    Arguments as :func:`EmbedMultipleConfs` (RDKit's ``EmbedParameters`` or ours as
    ``params``, or RDKit's keyword names: ``randomSeed``, ``clearConfs``, ``coordMap``,
    ``maxAttempts``, ``enforceChirality``; ``useRandomCoords``, ``forceTol`` and RDKit's
    other embedding knobs are accepted and ignored). ``clearConfs=True`` (the default)
    replaces the existing conformers, so the id is 0; otherwise it follows the largest
    existing id. On failure -1 is returned and ``mol`` keeps exactly the conformers it
    had. Bad input (a ``None`` molecule, a bad ``coordMap``) raises
    :class:`InvalidInputError`, an unknown keyword ``TypeError``.

    >>> from rdkit import Chem
    >>> m = Chem.AddHs(Chem.MolFromSmiles("CC(=O)Nc1ccc(O)cc1"))
    >>> EmbedMolecule(m, randomSeed=7)
    0
    """
    if isinstance(params, int) and not isinstance(params, bool):
        kwargs.setdefault("maxAttempts", params)  # RDKit's second positional argument
        params = None
    for key in list(kwargs):
        if key in _EMBED_MOLECULE_IGNORED:
            del kwargs[key]
        elif key not in EmbedParameters.__slots__:
            raise TypeError(f"EmbedMolecule() got an unexpected keyword argument {key!r}")
    if kwargs.get("maxAttempts") == 0:
        del kwargs["maxAttempts"]  # RDKit's default 0: "use the default"
    ids = EmbedMultipleConfs(mol, 1, params, **kwargs)
    return ids[0] if ids else -1

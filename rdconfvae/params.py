"""``EmbedParameters``: the options object of :func:`rdconfvae.EmbedMultipleConfs`.

It mirrors RDKit's ``rdDistGeom.EmbedParameters``: the same field names, unknown
attributes rejected with ``AttributeError``, and a JSON round trip. RDKit's own
parameter objects (``AllChem.ETKDGv3()`` ...) are accepted too: the fields that
mean something here are read (:meth:`EmbedParameters.from_rdkit`), the rest are
ignored (listed in ``RDKIT_IGNORED``).
"""

from __future__ import annotations

import json
import math
import numbers
import random
from typing import Any, Literal, get_args

import numpy as np

from rdconfvae.embedding.coordmap import coord_map_from_json, coord_map_json
from rdconfvae.errors import InvalidInputError

__all__ = [
    "EmbedParameters",
    "RDKIT_IGNORED",
    "to_params",
    "check_polish_iters",
    "resolve_seed",
    "check_count",
    "validate",
    "ALIASES",
    "Dielectric",
    "Fallback",
    "DEFAULT_POLISH_ITERS",
]

#: MMFF dielectric model: distance-dependent (eps = 4 r) or constant (eps = 1, gas phase).
Dielectric = Literal["distance", "constant"]
#: Out-of-domain molecules: raise UnsupportedMoleculeError, or embed with RDKit's ETKDGv3.
Fallback = Literal["raise", "etkdg"]

#: MMFF94s polish steps of the default output (without ``mmff``). Chosen on held-out CCD
#: validation molecules (300, n=50; the solver's stress L-BFGS skipped ahead of the polish):
#: more steps bring poses closer to experiment (below 1 A: 40 steps 64.7 % with the
#: L-BFGS, 60: 65.0 %, 80: 67.3 %, 100: 67.7 %) at about 0.09 ms per conformer each. 100
#: steps cost 0.51x ETKDGv3's CPU time on Platinum, over the half the project allows;
#: 80 gives nearly the same poses within it.
DEFAULT_POLISH_ITERS = 80

#: Our fields with defaults. Names shared with RDKit keep RDKit's meaning.
_FIELDS: dict[str, Any] = {
    "randomSeed": -1,  # -1: random; any other value (0 too) is a seed
    "clearConfs": True,
    "pruneRmsThresh": -1.0,  # Angstrom, heavy atoms, symmetry-aware; <= 0: no pruning
    "numThreads": 1,  # 0: all cores
    "enforceChirality": True,  # never return a wrong stereoisomer
    "maxAttempts": 3,  # sampling rounds to replace conformers with wrong stereo
    "timeout": 0.0,  # seconds per molecule; 0: none
    "mmff": False,  # MMFF94s minimisation to convergence
    "polishIters": DEFAULT_POLISH_ITERS,  # without mmff: MMFF94s polish steps (0: raw output)
    "dielectric": "distance",  # MMFF dielectric: "distance" (eps = 4r) or "constant"
    "fallback": "etkdg",  # out-of-domain molecules: "etkdg" or "raise"
    "temperature": 1.0,  # scale of the prior's standard deviation when sampling z
    "coordMap": None,  # {atom index: Point3D}: atoms fixed there (rdconfvae.embedding.constraints)
}

#: RDKit EmbedParameters fields accepted and ignored (no meaning for a learned model).
RDKIT_IGNORED: tuple[str, ...] = (
    "ETversion",
    "basinThresh",
    "boundsMatForceScaling",
    "boxSizeMult",
    "embedForceField",
    "embedFragmentsSeparately",
    "enableSequentialRandomSeeds",
    "forceTransAmides",
    "ignoreSmoothingFailures",
    "initialEmbeddingMode",
    "maxIterations",
    "numZeroFail",
    "onlyHeavyAtomsForRMS",
    "onlyInitialEmbedding",
    "optimizerForceTol",
    "randNegEig",
    "symmetrizeConjugatedTerminalGroupsForPruning",
    "trackFailures",
    "useBasicKnowledge",
    "useExpTorsionAnglePrefs",
    "useLegacyImplementation",
    "useMacrocycle14config",
    "useMacrocycleTorsions",
    "useRandomCoords",
    "useSmallRingTorsions",
    "useSymmetryForPruning",
    "verbose",
)

#: RDKit fields whose value we take over.
_FROM_RDKIT = (
    "randomSeed",
    "clearConfs",
    "pruneRmsThresh",
    "numThreads",
    "enforceChirality",
    "timeout",
)


class EmbedParameters:
    """Options for :func:`rdconfvae.EmbedMultipleConfs` (RDKit-style, strict attributes).

    >>> p = EmbedParameters()
    >>> p.randomSeed = 42
    >>> EmbedParameters.FromJSON(p.ToJSON()).randomSeed
    42
    >>> p.randomseed = 1
    Traceback (most recent call last):
    ...
    AttributeError: Cannot set unknown attribute 'randomseed'
    """

    __slots__ = tuple(_FIELDS) + RDKIT_IGNORED

    # the types of the fields in _FIELDS, for type checkers (values live in the slots)
    randomSeed: int
    clearConfs: bool
    pruneRmsThresh: float
    numThreads: int
    enforceChirality: bool
    maxAttempts: int
    timeout: float
    mmff: bool
    polishIters: int
    dielectric: Dielectric
    fallback: Fallback
    temperature: float
    coordMap: Any  # {atom index: Point3D or 3 numbers} or None

    def __init__(self, **kwargs: Any) -> None:
        for name, value in _FIELDS.items():
            object.__setattr__(self, name, value)
        for name in RDKIT_IGNORED:
            object.__setattr__(self, name, None)
        for name, value in kwargs.items():
            setattr(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in self.__slots__:
            raise AttributeError(f"Cannot set unknown attribute {name!r}")
        object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        body = ", ".join(f"{k}={getattr(self, k)!r}" for k in _FIELDS)
        return f"EmbedParameters({body})"

    def as_dict(self) -> dict[str, Any]:
        """Our fields only (the ignored RDKit fields carry no meaning)."""
        return {k: getattr(self, k) for k in _FIELDS}

    def ToJSON(self) -> str:  # noqa: N802 -- RDKit's name
        data = self.as_dict()
        data["coordMap"] = coord_map_json(data["coordMap"])
        return json.dumps(data, sort_keys=True)

    @classmethod
    def FromJSON(cls, text: str) -> EmbedParameters:  # noqa: N802 -- RDKit's name
        data = json.loads(text)
        if "coordMap" in data:
            data["coordMap"] = coord_map_from_json(data["coordMap"])
        return cls(**{k: v for k, v in data.items() if k in _FIELDS})

    def SetCoordMap(self, coord_map: Any) -> None:  # noqa: N802 -- RDKit's name
        """RDKit's setter: ``{atom index: Point3D}`` atoms fixed at those coordinates."""
        self.coordMap = dict(coord_map)

    @classmethod
    def from_rdkit(cls, params: Any) -> EmbedParameters:
        """Take the meaningful fields of an RDKit ``EmbedParameters`` (ETKDGv3, ...)."""
        out = cls()
        for name in _FROM_RDKIT:
            if hasattr(params, name):
                setattr(out, name, getattr(params, name))
        out.coordMap = rdkit_coord_map(params)
        return out


def rdkit_coord_map(params: Any) -> dict[int, Any] | None:
    """The coordMap set on an RDKit ``EmbedParameters`` with ``SetCoordMap`` (it has no
    getter; ``EmbedParametersToJSON`` writes it, to 1e-6 A), or None."""
    from rdkit.Chem import rdDistGeom

    try:
        data = json.loads(rdDistGeom.EmbedParametersToJSON(params))
    except Exception:  # not an RDKit EmbedParameters (Boost.Python raises ArgumentError)
        return None
    found = data.get("coordMap")
    return coord_map_from_json(found) if found else None


def to_params(params: Any) -> EmbedParameters:
    """Our parameters from ``None``, our own object (copied) or an RDKit one."""
    if params is None:
        return EmbedParameters()
    if isinstance(params, EmbedParameters):
        return EmbedParameters(**params.as_dict())
    if all(hasattr(params, name) for name in ("randomSeed", "pruneRmsThresh", "clearConfs")):
        return EmbedParameters.from_rdkit(params)
    raise TypeError(
        f"params must be rdconfvae.EmbedParameters or an RDKit EmbedParameters, "
        f"not {type(params).__name__}"
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


def _refuse(name: str, want: str, value: Any) -> InvalidInputError:
    return InvalidInputError(f"{name} must be {want}, got {value!r} ({type(value).__name__})")


def check_polish_iters(value: Any) -> int:
    """``polishIters`` as a non-negative int, or :class:`InvalidInputError` naming it
    (a bool, a float such as 2.5 or a string is refused, not truncated)."""
    if not _is_int(value) or value < 0:
        raise _refuse("polishIters", "a non-negative integer", value)
    return int(value)


def check_count(value: Any, name: str = "n") -> int:
    """A number of conformers as an int: an integer (not a bool, float or string), or
    :class:`InvalidInputError` naming the argument. The sign is the caller's business
    (``EmbedMultipleConfs`` returns ``[]`` for 0, ``embed`` refuses it)."""
    if not _is_int(value):
        raise _refuse(name, "an integer", value)
    return int(value)


#: Field -> (check, what it must be). One place for every surface (embed,
#: EmbedMultipleConfs, EmbedParameters, the batch EmbedOptions and the CLI).
_CHECKS: dict[str, tuple[Any, str]] = {
    "randomSeed": (_is_int, "an integer (-1: random)"),
    "clearConfs": (lambda v: isinstance(v, bool | np.bool_), "True or False"),
    "pruneRmsThresh": (lambda v: _is_real(v) and math.isfinite(v), "a number (Angstrom)"),
    "numThreads": (_is_int, "an integer (0: all cores)"),
    "enforceChirality": (lambda v: isinstance(v, bool | np.bool_), "True or False"),
    "maxAttempts": (lambda v: _is_int(v) and v >= 0, "a non-negative integer"),
    "timeout": (
        lambda v: v is None or (_is_real(v) and v >= 0 and not math.isnan(v)),
        "a non-negative number of seconds (0: none)",
    ),
    "mmff": (lambda v: isinstance(v, bool | np.bool_), "True or False"),
    "polishIters": (lambda v: _is_int(v) and v >= 0, "a non-negative integer"),
    "dielectric": (
        lambda v: v in get_args(Dielectric),
        " or ".join(map(repr, get_args(Dielectric))),
    ),
    "fallback": (lambda v: v in get_args(Fallback), " or ".join(map(repr, get_args(Fallback)))),
    "temperature": (lambda v: _is_real(v) and 0 < v < math.inf, "a positive number"),
}


#: Keyword names of :func:`rdconfvae.embed` and of the batch ``EmbedOptions`` for the
#: fields, so that an error names the argument the caller wrote.
ALIASES: dict[str, str] = {
    "randomSeed": "seed",
    "clearConfs": "clear_confs",
    "pruneRmsThresh": "prune_rms",
    "numThreads": "num_threads",
    "polishIters": "polish_iters",
}


def validate(opts: EmbedParameters, aliases: dict[str, str] | None = None) -> EmbedParameters:
    """Check every field of ``opts``; :class:`InvalidInputError` names the first bad one
    (as ``aliases[field] (field)`` where the caller knows it by another name).

    The RDKit fields we ignore are not checked. Returns ``opts``.
    """
    for name, (ok, want) in _CHECKS.items():
        value = getattr(opts, name)
        if not ok(value):
            shown = f"{aliases[name]} ({name})" if aliases and name in aliases else name
            raise _refuse(shown, want, value)
    return opts


def resolve_seed(seed: Any) -> int:
    """The seed to use: ``seed`` itself, or a random one for ``None`` or a negative value
    (RDKit's ``randomSeed=-1``)."""
    if seed is None or int(seed) < 0:
        return random.SystemRandom().randrange(0, 2**31 - 1)
    return int(seed)

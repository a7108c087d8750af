"""Options of the ensemble recipe (:mod:`rdconfvae.data.recipe`) and the SD properties it writes."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from rdconfvae.data.records import ALLOWED_ELEMENTS
from rdconfvae.errors import (
    InvalidInputError,
)

__all__ = [
    "DEFAULT_RMS",
    "DEFAULT_SAMPLES",
    "DEFAULT_WINDOW",
    "ENERGY_PROP",
    "STAT_KEYS",
    "WEIGHT_PROP",
    "BuildOptions",
]

#: ETKDGv3 embeddings per molecule (chosen by ``coverage`` on Platinum, see docs/training-data.md).
DEFAULT_SAMPLES = 100
#: Energy window, kcal/mol above the molecule's lowest conformer.
DEFAULT_WINDOW = 20.0
#: De-duplication threshold: heavy-atom RMSD, Angstrom.
DEFAULT_RMS = 0.5
#: SD property with the conformer energy, kcal/mol relative to the molecule's lowest conformer.
ENERGY_PROP = "rel_energy_kcal_mol"
#: SD property with the conformer's Boltzmann weight (a molecule's weights sum to 1).
WEIGHT_PROP = "boltzmann_weight"

#: 1 Bohr in Angstrom (CODATA 2018).


STAT_KEYS = (
    "embedded",
    "not_converged",
    "stereo_changed",
    "xtb_failed",
    "above_window",
    "duplicates",
    "capped",
    "kept",
)


@dataclass(frozen=True, slots=True)
class BuildOptions:
    """The ensemble recipe. Frozen: unknown attributes raise ``AttributeError``.

    Attributes:
        samples: ETKDGv3 embeddings per molecule (at least; see ``samples_per_rotor``).
        samples_per_rotor: embeddings per rotatable bond; a molecule gets
            ``max(samples, samples_per_rotor * rotatable bonds)`` (0: always ``samples``).
        dielectric: MMFF electrostatics, ``"distance"`` (eps = c r) or ``"constant"`` (eps = c).
        dielectric_constant: c; None means 4.0 for ``"distance"`` and 1.0 (gas phase) for
            ``"constant"``.
        window: energy window, kcal/mol above the lowest conformer (``inf``: no window).
        rms: de-duplication threshold, heavy-atom RMSD in Angstrom (0: no de-duplication).
        max_confs: keep at most this many (lowest-energy) conformers; None keeps all.
        xtb: re-optimise with GFN2-xTB (tblite) and use its energies.
        xtb_solvent: ALPB solvent name for xTB (e.g. ``"water"``); None is gas phase.
        temperature: Boltzmann temperature, K.
        seed: run seed (>= 0); each molecule's seed derives from it and its record index.
        max_iters: MMFF iteration cap per conformer (unconverged conformers are dropped).
        timeout: ETKDG wall-time limit per molecule, seconds (None: none). A molecule that hits
            it keeps the conformers embedded so far, which depends on machine speed.
        allowed_elements: molecules with another element are rejected; None allows any.
    """

    samples: int = DEFAULT_SAMPLES
    samples_per_rotor: int = 0
    dielectric: Literal["distance", "constant"] = "distance"
    dielectric_constant: float | None = None
    window: float = DEFAULT_WINDOW
    rms: float = DEFAULT_RMS
    max_confs: int | None = None
    xtb: bool = False
    xtb_solvent: str | None = None
    temperature: float = 298.15
    seed: int = 0
    max_iters: int = 5000
    timeout: float | None = None
    allowed_elements: tuple[str, ...] | None = ALLOWED_ELEMENTS

    def __post_init__(self) -> None:
        if self.allowed_elements is not None and not isinstance(self.allowed_elements, tuple):
            object.__setattr__(self, "allowed_elements", tuple(self.allowed_elements))
        checks = [
            (int(self.samples) >= 1, f"samples must be >= 1, got {self.samples}"),
            (self.samples_per_rotor >= 0, "samples_per_rotor must be >= 0"),
            (
                self.dielectric in ("distance", "constant"),
                f"dielectric must be 'distance' or 'constant', got {self.dielectric!r}",
            ),
            (
                self.dielectric_constant is None or self.dielectric_constant > 0,
                "dielectric_constant must be > 0",
            ),
            (self.window > 0, f"window must be > 0 kcal/mol, got {self.window}"),
            (self.rms >= 0, f"rms must be >= 0 A, got {self.rms}"),
            (self.max_confs is None or self.max_confs >= 1, "max_confs must be >= 1 or None"),
            (self.temperature > 0, "temperature must be > 0 K"),
            (0 <= self.seed < 2**63, f"seed must be >= 0, got {self.seed}"),
            (self.max_iters >= 1, "max_iters must be >= 1"),
            (self.timeout is None or self.timeout > 0, "timeout must be > 0 s or None"),
        ]
        for ok, message in checks:
            if not ok:
                raise InvalidInputError(message)

    @property
    def eps(self) -> float:
        """The dielectric constant c actually used."""
        if self.dielectric_constant is not None:
            return float(self.dielectric_constant)
        return 4.0 if self.dielectric == "distance" else 1.0

    @property
    def energy_method(self) -> str:
        """Human-readable name of the method that gives the final energies."""
        if self.xtb:
            return "GFN2-xTB" + (f" ALPB({self.xtb_solvent})" if self.xtb_solvent else " gas")
        eps = f"{self.eps:g}r" if self.dielectric == "distance" else f"{self.eps:g}"
        return f"MMFF94s eps={eps}"

    def sample_count(self, n_rotatable: int) -> int:
        """ETKDG embeddings for a molecule with ``n_rotatable`` rotatable bonds."""
        return max(int(self.samples), int(self.samples_per_rotor) * int(n_rotatable))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``from_dict`` inverts it)."""
        d = asdict(self)
        if d["allowed_elements"] is not None:
            d["allowed_elements"] = list(d["allowed_elements"])
        if math.isinf(d["window"]):
            d["window"] = None
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BuildOptions:
        """Inverse of :meth:`to_dict`; unknown keys raise ``InvalidInputError``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidInputError(f"unknown build option(s): {', '.join(unknown)}")
        d = dict(data)
        if "window" in d and d["window"] is None:
            d["window"] = math.inf
        if d.get("allowed_elements") is not None:
            d["allowed_elements"] = tuple(d["allowed_elements"])
        return cls(**d)

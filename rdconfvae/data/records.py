"""The in-memory record every data source produces: one molecular graph and its conformers.

Trainer and benchmark consume :class:`MolRecord` whatever the source (the PDB Chemical Component
Dictionary, GEOM pickles, multi-conformer SDF). Units: Angstrom, kcal/mol.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rdkit import Chem

__all__ = ["ALLOWED_ELEMENTS", "MolRecord", "SPLITS"]

#: The model's element vocabulary. Data sources drop molecules holding any other element.
ALLOWED_ELEMENTS: tuple[str, ...] = ("H", "C", "N", "O", "F", "P", "S", "Cl", "Br", "I")

#: Values of :attr:`MolRecord.split`; the empty string means "not split".
SPLITS: tuple[str, ...] = ("train", "val", "")


@dataclass
class MolRecord:
    """One molecule with one or more reference conformers.

    Attributes:
        name: CCD code, or the molecule id of other sources.
        mol: the molecule with explicit hydrogens as in the source and at least one conformer
            attached (Angstrom); conformer ``i`` carries weight ``weights[i]``.
        weights: ``(C,)`` float64 conformer weights summing to 1.
        energies: ``(C,)`` conformer energies in kcal/mol, or None when the source has none.
        split: ``"train"``, ``"val"`` or ``""`` (unsplit).
    """

    name: str
    mol: Chem.Mol
    weights: np.ndarray
    energies: np.ndarray | None = None
    split: str = ""

    def __post_init__(self) -> None:
        n_conf = self.mol.GetNumConformers()
        if n_conf < 1:
            raise ValueError(f"{self.name}: a MolRecord needs at least one conformer")
        self.weights = np.asarray(self.weights, dtype=np.float64)
        if self.weights.shape != (n_conf,):
            raise ValueError(
                f"{self.name}: weights shape {self.weights.shape} does not match "
                f"{n_conf} conformers"
            )
        if abs(float(self.weights.sum()) - 1.0) > 1e-6:
            raise ValueError(f"{self.name}: weights sum to {self.weights.sum()}, not 1")
        if self.energies is not None:
            self.energies = np.asarray(self.energies, dtype=np.float64)
            if self.energies.shape != (n_conf,):
                raise ValueError(
                    f"{self.name}: energies shape {self.energies.shape} does not match "
                    f"{n_conf} conformers"
                )
        if self.split not in SPLITS:
            raise ValueError(f"{self.name}: split must be one of {SPLITS}, got {self.split!r}")

    @property
    def num_conformers(self) -> int:
        """Number of conformers attached to :attr:`mol`."""
        return self.mol.GetNumConformers()

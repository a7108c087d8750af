"""PoseBusters' energy-ratio check and its reference ensembles (UFF, kcal/mol).

:func:`energy_ratio_check` divides a conformer's UFF energy by the mean energy of a reference
ensemble (:func:`reference_energy`, cached per InChI for the process) built from the input
molecule's InChI (:func:`input_inchi`). Called by
:func:`rdconfvae.evaluation.validity.posebusters_checks`.
"""

from __future__ import annotations

import functools
import logging
import math
from typing import Any

from rdkit import Chem

from rdconfvae.evaluation.posebusters_support import with_defaults

__all__ = ["reference_energy", "input_inchi", "energy_ratio_check"]

#: the logger these lines have always gone to (before the split they lived in metrics.py)
log = logging.getLogger("rdconfvae.evaluation.metrics")


@functools.lru_cache(maxsize=4096)
def reference_energy(inchi: str, n_confs: int, num_threads: int) -> float:
    """Mean UFF energy (kcal/mol) of PoseBusters' reference ensemble for one InChI.

    ``posebusters.modules.energy_ratio.get_energies``: ``n_confs`` ETKDGv3 conformers (seed
    42, random starting coordinates) of the molecule rebuilt from the InChI, each
    UFF-minimised; identical for any ``num_threads``. Computed once per InChI and process; a
    failure is remembered as NaN (the check then fails, as in PoseBusters, which would retry
    it for every conformer).
    """
    from posebusters.modules.energy_ratio import get_energies

    try:
        energies = get_energies(inchi, n_confs, num_threads)
        return float(sum(energies) / len(energies))
    except Exception as exc:  # noqa: BLE001 - PoseBusters' semantics: any failure -> NaN
        log.warning("energy-ratio reference ensemble failed for %s: %s", inchi, exc)
        return math.nan


def input_inchi(mol: Chem.Mol, inchi_strict: bool) -> str | None:
    """InChI of ``mol``'s graph with its declared stereo (no coordinates read), prepared as
    PoseBusters' energy module prepares a conformer (sanitised, radicals filled with H,
    hydrogens explicit); None when that fails."""
    from posebusters.tools.inchi import get_inchi
    from posebusters.tools.logging import CaptureLogger
    from posebusters.tools.molecules import hydrate_radicals

    work = Chem.Mol(mol)
    work.RemoveAllConformers()
    try:
        with CaptureLogger():
            return get_inchi(Chem.AddHs(hydrate_radicals(work)), inchi_strict=inchi_strict)
    except Exception:  # noqa: BLE001 - as PoseBusters: no InChI, no reference
        return None


def energy_ratio_check(
    single: Chem.Mol, *, ref_inchi: str | None, num_threads: int, **params: Any
) -> dict[str, Any]:
    """PoseBusters' ``check_energy_ratio`` on a one-conformer molecule (conformer id 0), with
    the reference ensemble of ``ref_inchi`` (the input molecule's InChI).

    UFF energy of the conformer (missing hydrogens added and UFF-placed first, none for a
    molecule with explicit H) divided by the mean UFF energy of the reference ensemble
    (:func:`reference_energy`), passing when the ratio is <= ``threshold_energy_ratio``.
    PoseBusters takes the ensemble of the conformer's own InChI (stereo perceived from its
    coordinates); that is ``ref_inchi`` for any conformer with the input's stereo, so the
    result is the same. For a conformer whose InChI differs (``inchi_matches_input`` False)
    PoseBusters would embed that other stereoisomer instead, which can take tens of minutes
    per conformer when it is geometrically impossible (a cage with an inverted centre).
    """
    from posebusters.modules.energy_ratio import check_energy_ratio
    from posebusters.tools.inchi import get_inchi
    from posebusters.tools.logging import CaptureLogger
    from posebusters.tools.molecules import add_hydrogens_with_uff_positions
    from rdkit.Chem.rdForceFieldHelpers import UFFHasAllMoleculeParams

    p = with_defaults(check_energy_ratio, params)
    failed = {"energy_ratio": math.nan, "energy_ratio_passes": math.nan, "inchi": None}
    work = Chem.Mol(single)
    if work.GetNumConformers() == 0 or Chem.SanitizeMol(work, catchErrors=True):
        return failed
    try:
        with CaptureLogger():
            work, _, observed = add_hydrogens_with_uff_positions(work)
        if not UFFHasAllMoleculeParams(work):
            return failed
        inchi = get_inchi(work, inchi_strict=p["inchi_strict"])
    except Exception:  # noqa: BLE001 - PoseBusters: any failure here -> NaN
        return failed
    mean = reference_energy(
        ref_inchi or inchi, int(p["ensemble_number_conformations"]), int(num_threads)
    )
    if mean == 0:
        mean = p["epsilon"]
    ratio = observed / mean
    ok = ratio <= p["threshold_energy_ratio"] if math.isfinite(ratio) else math.nan
    return {"energy_ratio": ratio, "energy_ratio_passes": ok, "inchi": inchi}

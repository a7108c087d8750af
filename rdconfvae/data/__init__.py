"""Training and reference data: records, the CCD training set, exclusions, readers.

- :func:`build_ccd_set` / :func:`load_ccd_set`: experimental ligand conformations from the PDB
  Chemical Component Dictionary (``python -m rdconfvae.data ccd OUT_DIR``).
- :func:`read_geom_rdkit_folder`, :func:`read_sdf_ensembles`: reference ensembles users have.
- :func:`build_file` / :func:`build_ensemble`: conformer ensembles from SMILES (ETKDGv3 ->
  MMFF94s -> [GFN2-xTB] -> window -> RMSD dedupe -> Boltzmann weights;
  ``python -m rdconfvae.data build IN OUT``), read back with :func:`read_built_ensembles`;
  :func:`measure_coverage`: how close that recipe comes to experimental poses.
- :func:`load_exclusions`, :func:`is_excluded`: benchmark molecules that never enter training.

``import rdconfvae.data`` is light: biotite (needed only to build the CCD set) is imported by
the build function itself.

Build the set once (about 2 minutes, one CPU), then load it::

    python -m rdconfvae.data ccd data_build/ccd

    from rdconfvae.data import load_ccd_set
    train = load_ccd_set("data_build/ccd", split="train")
"""

from __future__ import annotations

from rdconfvae.data.ccd import FILTERS, build_ccd_set, check_component, load_ccd_set, split_of
from rdconfvae.data.coverage import measure_coverage
from rdconfvae.data.exclusions import Exclusions, inchikey_skeleton, is_excluded, load_exclusions
from rdconfvae.data.job import build_file, read_built_ensembles
from rdconfvae.data.readers import read_geom_rdkit_folder, read_sdf_ensembles
from rdconfvae.data.recipe import Ensemble, build_ensemble
from rdconfvae.data.recipe_options import BuildOptions
from rdconfvae.data.records import ALLOWED_ELEMENTS, MolRecord

__all__ = [
    "ALLOWED_ELEMENTS",
    "FILTERS",
    "BuildOptions",
    "Ensemble",
    "Exclusions",
    "MolRecord",
    "build_ccd_set",
    "build_ensemble",
    "build_file",
    "check_component",
    "inchikey_skeleton",
    "is_excluded",
    "load_ccd_set",
    "load_exclusions",
    "measure_coverage",
    "read_built_ensembles",
    "read_geom_rdkit_folder",
    "read_sdf_ensembles",
    "split_of",
]

"""Training and reference data: records, the CCD training set, exclusions, readers.

- :func:`build_ccd_set` / :func:`load_ccd_set`: experimental ligand conformations from the PDB
  Chemical Component Dictionary (``python -m rdconfvae.data ccd OUT_DIR``).
- :func:`read_geom_rdkit_folder`, :func:`read_sdf_ensembles`: reference ensembles users have.
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
from rdconfvae.data.exclusions import Exclusions, inchikey_skeleton, is_excluded, load_exclusions
from rdconfvae.data.readers import read_geom_rdkit_folder, read_sdf_ensembles
from rdconfvae.data.records import ALLOWED_ELEMENTS, MolRecord

__all__ = [
    "ALLOWED_ELEMENTS",
    "FILTERS",
    "Exclusions",
    "MolRecord",
    "build_ccd_set",
    "check_component",
    "inchikey_skeleton",
    "is_excluded",
    "load_ccd_set",
    "load_exclusions",
    "read_geom_rdkit_folder",
    "read_sdf_ensembles",
    "split_of",
]

"""Training set of experimental ligand conformations from the PDB Chemical Component Dictionary.

The wwPDB Chemical Component Dictionary (CCD) ships inside the ``biotite`` wheel as
``biotite/structure/info/components.bcif``. For every component it holds the bonded graph
(``chem_comp_atom``, ``chem_comp_bond``), the declared stereo (``pdbx_stereo_config``), computed
ideal coordinates (``pdbx_model_Cartn_*_ideal``) and *model* coordinates (``model_Cartn_*``) taken
from one PDB entry (``chem_comp.pdbx_model_coordinates_db_code``): an experimentally observed,
usually protein-bound, conformation. :func:`build_ccd_set` turns the components that pass every
filter of :data:`FILTERS` into RDKit molecules with the model coordinates as their one conformer
and writes them to a compact ``.npz`` file that :func:`load_ccd_set` reads back as
:class:`~rdconfvae.data.records.MolRecord` objects.

Benchmark molecules never enter: a component whose CCD code or InChIKey skeleton is on the
exclusion list (:mod:`rdconfvae.data.exclusions`) is dropped, and so is every later component with
the skeleton of one already kept, so no molecule appears twice.

Modules: :mod:`~rdconfvae.data.ccd.components` (reading the CCD, a component as an RDKit
molecule), :mod:`~rdconfvae.data.ccd.filters` (the filters, :func:`check_component`) and
:mod:`~rdconfvae.data.ccd.store` (the split, :func:`build_ccd_set`, :func:`load_ccd_set`).
"""

from __future__ import annotations

from rdconfvae.data.ccd.components import (
    CCDComponent,
    CCDTables,
    component_to_mol,
    default_ccd_path,
    iter_components,
    read_ccd,
)
from rdconfvae.data.ccd.filters import (
    BOND_TOLERANCE,
    FILTERS,
    MAX_HEAVY_ATOMS,
    MIN_HEAVY_ATOMS,
    CheckResult,
    check_component,
    is_polymer_type,
)
from rdconfvae.data.ccd.store import (
    CCD_FILE_NAME,
    FORMAT_VERSION,
    VAL_PERCENT,
    build_ccd_set,
    load_ccd_set,
    split_of,
)

__all__ = [
    "BOND_TOLERANCE",
    "CCD_FILE_NAME",
    "FILTERS",
    "FORMAT_VERSION",
    "MAX_HEAVY_ATOMS",
    "MIN_HEAVY_ATOMS",
    "VAL_PERCENT",
    "CCDComponent",
    "CCDTables",
    "CheckResult",
    "build_ccd_set",
    "check_component",
    "component_to_mol",
    "default_ccd_path",
    "is_polymer_type",
    "iter_components",
    "load_ccd_set",
    "read_ccd",
    "split_of",
]

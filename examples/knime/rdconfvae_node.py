"""KNIME Python Script node: 3D conformers with rdconfvae (paste into the node's editor).

Input table 0: a column of molecules (SMILES strings, SDF / Mol blocks or RDKit
molecules). Output table 0: the input columns plus, per conformer (or per molecule),
``status``, ``error``, ``n_conformers``, ``conformer_id``, ``MMFF_ENERGY`` (kcal/mol)
and an ``SDF`` column of SDF text (use "Molecule Type Cast" to make it an SDF cell).
A molecule that cannot be embedded keeps a row with ``status`` "failed" and the
reason in ``error``; the node itself does not fail.

Settings come from flow variables when present (e.g. set by a "Configuration"
or "Variable Creator" node), otherwise from the defaults below.

All the work happens in ``rdconfvae.integrations.pandas.knime_table``, tested without KNIME.
"""

import knime.scripting.io as knio

from rdconfvae.integrations.pandas import knime_table

SETTINGS = {
    "rdconfvae_column": "",  # "" = the first column whose name contains smiles/sdf/mol
    "rdconfvae_n": 10,  # conformers per molecule
    "rdconfvae_rows": "conformer",  # "conformer": one SDF record per row; or "molecule"
    "rdconfvae_mmff": True,  # MMFF94s minimisation, energies in MMFF_ENERGY
    "rdconfvae_seed": 0,  # same seed, same conformers
    "rdconfvae_prune_rms": -1.0,  # > 0: drop near-duplicates closer than this RMSD (A)
    "rdconfvae_timeout": 0.0,  # seconds per molecule, 0 = none
}
for key, default in SETTINGS.items():
    value = knio.flow_variables.get(key, default)
    if isinstance(default, bool) and isinstance(value, str):
        value = value.strip().lower() in ("1", "true", "yes")
    SETTINGS[key] = type(default)(value)

table = knio.input_tables[0].to_pandas()
result = knime_table(
    table,
    column=SETTINGS["rdconfvae_column"] or None,
    n=SETTINGS["rdconfvae_n"],
    rows=SETTINGS["rdconfvae_rows"],
    mmff=SETTINGS["rdconfvae_mmff"],
    seed=SETTINGS["rdconfvae_seed"],
    prune_rms=SETTINGS["rdconfvae_prune_rms"],
    timeout=SETTINGS["rdconfvae_timeout"] or None,
)
knio.output_tables[0] = knio.Table.from_pandas(result)

"""Embed a DataFrame column of molecules: one row per molecule or one row per conformer.

>>> import pandas as pd
>>> from rdconfvae.integrations.pandas import embed_frame
>>> df = pd.DataFrame({"smiles": ["CCO", "c1ccccc1O", "not a smiles"]})
>>> out = embed_frame(df, smiles_col="smiles", n=3, seed=1)
>>> out[["status", "n_conformers"]].values.tolist()
[['ok', 3], ['ok', 3], ['failed', 0]]
>>> out.loc[2, "error"]
"InvalidInputError: invalid SMILES 'not a smiles'"

Every molecule goes through :func:`rdconfvae.batch.unit.embed_one`, so it gets the same
conformers as from the command line or a Dask worker with the same options. A molecule
that fails (unparsable, out of the model's domain, timeout) becomes a row with
``status == "failed"`` and the reason in ``error``; the table is never lost to one
molecule.

The returned frame holds ``Chem.Mol`` objects (``None`` for failed rows) and is marked
for RDKit's ``PandasTools`` image rendering; ``PandasTools.WriteSDF`` writes one record
per row (per-conformer rows hold single-conformer molecules, so every conformer is
written). For tables that must leave Python (KNIME, Arrow, Parquet), :func:`knime_table`
replaces the molecules by SDF text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rdkit import Chem

from rdconfvae.batch.unit import EmbedOptions, EmbedResult, conformer_records, embed_one

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["embed_frame", "knime_table", "ROWS", "RESULT_COLUMNS", "CONFORMER_COLUMNS"]

#: Row layouts: one row per input molecule, or one row per conformer.
ROWS = ("molecule", "conformer")
#: Columns added in both layouts.
RESULT_COLUMNS = ("status", "error", "n_conformers")
#: Columns added in the per-conformer layout: the conformer's id and its properties
#: (MMFF energy in kcal/mol and convergence with ``mmff=True``; the generator).
CONFORMER_COLUMNS = ("conformer_id", "MMFF_ENERGY", "MMFF_CONVERGED", "rdconfvae_generator")

# Column names KNIME and common exports use for a molecule column, in order of preference.
_MOL_COLUMN_HINTS = ("smiles", "sdf", "molblock", "mol", "molecule", "structure")


def _is_missing(item: Any) -> bool:
    """None, NaN or pandas' NA (a molecule, string or bytes is never missing)."""
    if item is None:
        return True
    if isinstance(item, (Chem.Mol, str, bytes)):
        return False
    import pandas as pd

    try:
        return bool(pd.isna(item))
    except (TypeError, ValueError):  # array-like cells
        return False


def _options(n: int, embed_options: dict[str, Any]) -> EmbedOptions:
    """EmbedOptions from keyword arguments; an unknown keyword raises ``TypeError``."""
    return EmbedOptions(n=n, **embed_options)


def _require_column(df: Any, col: str) -> None:
    """KeyError naming ``col`` and the frame's columns (pandas or Dask frame)."""
    if col not in df.columns:
        raise KeyError(f"no column {col!r} in the frame (columns: {list(df.columns)})")


def check_rows(rows: str) -> None:
    """Checked before any molecule is embedded."""
    if rows not in ROWS:
        raise ValueError(f"rows must be one of {ROWS}, got {rows!r}")


def source_column(df: pd.DataFrame, smiles_col: str | None, mol_col: str | None) -> str:
    if (smiles_col is None) == (mol_col is None):
        raise TypeError("give exactly one of smiles_col= or mol_col=")
    col = smiles_col if smiles_col is not None else str(mol_col)
    _require_column(df, col)
    return col


def _embed_column(
    df: pd.DataFrame, col: str, name_col: str | None, options: EmbedOptions
) -> list[EmbedResult]:
    if name_col is not None:
        _require_column(df, name_col)
    items = df[col].tolist()
    names = df[name_col].tolist() if name_col is not None else [""] * len(items)
    results = []
    for i, (item, name) in enumerate(zip(items, names, strict=True)):
        name = "" if _is_missing(name) else str(name)
        results.append(embed_one(None if _is_missing(item) else item, name, i, options))
    return results


def _conformer_rows(result: EmbedResult) -> list[dict[str, Any]]:
    """One dict per conformer: a single-conformer molecule and the conformer's properties."""
    mol = result.mol
    if mol is None:
        return []
    rows = []
    for conf in mol.GetConformers():
        cid = conf.GetId()
        single = Chem.Mol(mol, False, cid)  # only this conformer, same id
        props = conf.GetPropsAsDict()
        for key, value in props.items():  # also as molecule properties: SD fields on write
            single.SetProp(key, str(value))
        single.SetIntProp("conformer_id", cid)
        rows.append(
            {
                "mol": single,
                "conformer_id": cid,
                "MMFF_ENERGY": float(props.get("MMFF_ENERGY", float("nan"))),
                "MMFF_CONVERGED": props.get("MMFF_CONVERGED"),
                "rdconfvae_generator": props.get("rdconfvae_generator"),
            }
        )
    return rows


def _assemble(
    df: pd.DataFrame, results: Sequence[EmbedResult], rows: str, mol_out: str
) -> pd.DataFrame:
    """The output frame: input columns, the molecule column, result columns."""
    import pandas as pd

    if rows == "molecule":
        out = df.copy()
        out[mol_out] = pd.Series([r.mol for r in results], index=df.index, dtype=object)
        out["status"] = [r.status for r in results]
        out["error"] = [r.error for r in results]
        out["n_conformers"] = pd.Series(
            [r.n_conformers for r in results], index=df.index, dtype="int64"
        )
        return out
    positions: list[int] = []
    records: list[dict[str, Any]] = []
    for pos, result in enumerate(results):
        confs = _conformer_rows(result)
        if not confs:  # failed (or no conformer): one row keeps the molecule's outcome
            confs = [
                {
                    "mol": None,
                    "conformer_id": None,
                    "MMFF_ENERGY": float("nan"),
                    "MMFF_CONVERGED": None,
                    "rdconfvae_generator": None,
                }
            ]
        for rec in confs:
            rec["status"], rec["error"], rec["n_conformers"] = (
                result.status,
                result.error,
                result.n_conformers,
            )
            positions.append(pos)
            records.append(rec)
    out = df.iloc[positions].copy()
    index = out.index

    def column(key: str, dtype: Any) -> pd.Series:
        return pd.Series([rec[key] for rec in records], index=index, dtype=dtype)

    out[mol_out] = column("mol", object)
    out["status"] = column("status", object)
    out["error"] = column("error", object)
    out["n_conformers"] = column("n_conformers", "int64")
    out["conformer_id"] = column("conformer_id", "Int64")
    out["MMFF_ENERGY"] = column("MMFF_ENERGY", "float64")
    out["MMFF_CONVERGED"] = column("MMFF_CONVERGED", "boolean")
    out["rdconfvae_generator"] = column("rdconfvae_generator", object)
    return out


def _render_molecules(frame: pd.DataFrame) -> None:
    """Mark ``frame`` for PandasTools' image rendering (a no-op where patching fails)."""
    try:
        from rdkit.Chem import PandasTools  # type: ignore[attr-defined]  # absent from stubs
    except ImportError:  # pragma: no cover - PandasTools needs pandas, which we have here
        return
    PandasTools.ChangeMoleculeRendering(frame)


def embed_frame(
    df: pd.DataFrame,
    smiles_col: str | None = None,
    mol_col: str | None = None,
    *,
    n: int = 10,
    rows: str = "molecule",
    name_col: str | None = None,
    mol_out: str = "ROMol",
    **embed_options: Any,
) -> pd.DataFrame:
    """Embed the molecules of one column of ``df``; return a new frame (``df`` is not changed).

    Args:
        df: the table.
        smiles_col: column of SMILES strings; or
        mol_col: column of ``Chem.Mol`` objects (or mol blocks), e.g. from
            ``PandasTools.LoadSDF`` / ``AddMoleculeColumnToFrame``. Exactly one of the two.
        n: conformers per molecule.
        rows: ``"molecule"``: one row per input row, ``mol_out`` holds the molecule with
            all its conformers; ``"conformer"``: one row per conformer (the input row
            repeated, its index label too), ``mol_out`` holds a single-conformer molecule,
            plus ``conformer_id``, ``MMFF_ENERGY`` (kcal/mol, NaN without ``mmff=True``),
            ``MMFF_CONVERGED`` and ``rdconfvae_generator``. A failed molecule keeps one row.
        name_col: column naming the molecules (the SDF title); default the molecule's
            own ``_Name``, if any.
        mol_out: column receiving the embedded molecules (``"ROMol"``: PandasTools'
            default); may be ``mol_col`` itself to replace the input molecules.
        **embed_options: :class:`rdconfvae.batch.unit.EmbedOptions` fields: ``mmff``,
            ``seed`` (default 0: the same molecule always gets the same conformers),
            ``prune_rms``, ``timeout``, ``fallback`` (default ``"etkdg"``), ``add_hs``
            (default True: complete 3D molecules with hydrogens), ``num_threads``.

    Returns:
        ``df``'s columns plus ``mol_out`` (``None`` where embedding failed), ``status``
        (``"ok"`` / ``"failed"``), ``error`` (``"ErrorType: message"`` or ``""``) and
        ``n_conformers``, with the per-conformer columns above for ``rows="conformer"``.

    Raises:
        TypeError: not exactly one of ``smiles_col`` / ``mol_col``, or an unknown option.
        KeyError: a named column does not exist.
        ValueError: bad ``rows`` or option value (e.g. ``n <= 0``).
        WeightsError: the model cannot be loaded (every molecule would fail).
    """
    col = source_column(df, smiles_col, mol_col)
    check_rows(rows)
    options = _options(n, embed_options)
    results = _embed_column(df, col, name_col, options)
    out = _assemble(df, results, rows, mol_out)
    _render_molecules(out)
    return out


def sdf_frame(
    df: pd.DataFrame,
    col: str,
    *,
    n: int,
    rows: str,
    name_col: str | None,
    sdf_col: str,
    embed_options: dict[str, Any],
) -> pd.DataFrame:
    """Like :func:`embed_frame`, with SDF text in ``sdf_col`` instead of ``Chem.Mol`` objects.

    Per molecule the text holds every conformer (one record each); per conformer one
    record. Failed rows get ``None``. Used by :func:`knime_table` and the Dask helpers.
    """
    import pandas as pd

    check_rows(rows)
    _require_column(df, col)
    options = _options(n, embed_options)
    results = _embed_column(df, col, name_col, options)
    tmp = "__rdconfvae_mol__"
    out = _assemble(df, results, rows, tmp)
    if rows == "molecule":
        texts = [
            conformer_records(m, r.name) if r.ok and (m := r.mol) is not None else None
            for r in results
        ]
    else:
        texts = [None if m is None else conformer_records(m) for m in out[tmp]]
    out[sdf_col] = pd.Series(texts, index=out.index, dtype=object)
    return out.drop(columns=[tmp])


def _guess_column(df: pd.DataFrame) -> str:
    lowered = {str(c).lower(): c for c in df.columns}
    for hint in _MOL_COLUMN_HINTS:
        for low, col in lowered.items():
            if hint in low:
                return col
    raise KeyError(
        f"no molecule column found (looked for a name containing one of {_MOL_COLUMN_HINTS}; "
        f"columns: {list(df.columns)}): name it with column="
    )


def knime_table(
    df: pd.DataFrame,
    column: str | None = None,
    *,
    n: int = 10,
    rows: str = "conformer",
    name_col: str | None = None,
    sdf_col: str = "SDF",
    **embed_options: Any,
) -> pd.DataFrame:
    """Embed a KNIME input table (as pandas); return a table of plain columns with SDF text.

    The function behind ``examples/knime/rdconfvae_node.py``: KNIME's Python Script node
    hands over a table whose molecule column holds SMILES, SDF / Mol blocks or RDKit
    molecules; the result holds no Python objects KNIME cannot convert.

    Args:
        df: the input table (``knio.input_tables[0].to_pandas()``).
        column: the molecule column; default the first whose name contains ``smiles``,
            ``sdf``, ``molblock``, ``mol``, ``molecule`` or ``structure`` (case-insensitive).
        n: conformers per molecule.
        rows: ``"conformer"`` (default: one SDF record per row, what KNIME's SDF cells
            hold) or ``"molecule"`` (one row per input row; ``sdf_col`` holds all its
            conformers as a multi-record SDF block).
        name_col: column with molecule names (the SDF title); default the row ID.
        sdf_col: output column of SDF text (``None`` where embedding failed).
        **embed_options: as for :func:`embed_frame`.

    Returns:
        The input columns plus ``status``, ``error``, ``n_conformers`` (and per conformer
        ``conformer_id``, ``MMFF_ENERGY``, ``MMFF_CONVERGED``, ``rdconfvae_generator``) and
        ``sdf_col``. The index is the row ID as text, unique also per conformer
        (``"<row id>_<conformer id>"``), as KNIME requires.
    """
    import pandas as pd

    col = column if column is not None else _guess_column(df)
    work = df.copy()
    work.index = pd.Index([str(i) for i in df.index], dtype=object)
    if name_col is None:
        name_col = "__rdconfvae_name__"
        work[name_col] = work.index
    out = sdf_frame(
        work,
        col,
        n=n,
        rows=rows,
        name_col=name_col,
        sdf_col=sdf_col,
        embed_options=embed_options,
    )
    if name_col == "__rdconfvae_name__":
        out = out.drop(columns=[name_col])
    if rows == "conformer":
        ids = out["conformer_id"].tolist()
        out.index = pd.Index(
            [
                f"{row}_{cid}" if not pd.isna(cid) else str(row)
                for row, cid in zip(out.index, ids, strict=True)
            ],
            dtype=object,
        )
    return out

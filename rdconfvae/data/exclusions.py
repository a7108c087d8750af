"""Molecules that must never enter training: every benchmark molecule.

The list ships inside the package (``eval_exclusions.tsv``, a byte-identical copy of
``shared/data/exclusions/eval_exclusions.tsv``) so a training set can be built anywhere. Columns:
``skeleton`` (the first 14 characters of the InChIKey, i.e. the hash of the connectivity layer,
which ignores stereo, isotopes and the mobile-proton layer), ``inchikey``, ``ccd_code`` (the PDB
chemical component code, may be empty) and ``source`` (``platinum``, ``geom_drugs_test``,
``dft_benchmark``).

A molecule is excluded when its CCD code or its InChIKey skeleton is listed:

>>> from rdkit import Chem
>>> ex = load_exclusions()
>>> is_excluded(Chem.MolFromSmiles("c1ccccc1"), exclusions=ex)
False
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from rdkit import Chem
from rdkit.rdBase import BlockLogs

from rdconfvae.errors import DataError

__all__ = [
    "EXCLUSIONS_FILE",
    "Exclusions",
    "inchikey_skeleton",
    "is_excluded",
    "load_exclusions",
]

#: File name of the packaged exclusion list inside ``rdconfvae.data``.
EXCLUSIONS_FILE = "eval_exclusions.tsv"

_COLUMNS = ("skeleton", "inchikey", "ccd_code", "source")


@dataclass(frozen=True)
class Exclusions:
    """An exclusion list: CCD codes and InChIKey skeletons that must stay out of training.

    Attributes:
        skeletons: InChIKey skeletons (14 upper-case letters).
        ccd_codes: PDB chemical component codes (upper case).
        sha256: sha256 of the file's bytes, for manifests.
        source: where the list was read from.
        n_rows: number of data rows in the file.
    """

    skeletons: frozenset[str]
    ccd_codes: frozenset[str]
    sha256: str
    source: str
    n_rows: int


_DEFAULT: Exclusions | None = None


def _parse(data: bytes, source: str) -> Exclusions:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{source}: exclusion list is not UTF-8 text ({exc})") from exc
    reader = csv.reader(io.StringIO(text), delimiter="\t")
    header = next(reader, None)
    if header is None or tuple(h.strip() for h in header[: len(_COLUMNS)]) != _COLUMNS:
        raise DataError(
            f"{source}: exclusion list must start with the header "
            f"{'<TAB>'.join(_COLUMNS)}, got {header!r}"
        )
    skeletons: set[str] = set()
    codes: set[str] = set()
    n_rows = 0
    for line_no, row in enumerate(reader, start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) < 3:
            raise DataError(f"{source}:{line_no}: expected at least 3 tab-separated columns")
        skeleton, inchikey, code = (c.strip() for c in row[:3])
        if not skeleton and inchikey:
            skeleton = inchikey[:14]
        if skeleton:
            if len(skeleton) != 14 or not skeleton.isalpha():
                raise DataError(f"{source}:{line_no}: {skeleton!r} is not an InChIKey skeleton")
            skeletons.add(skeleton.upper())
        if code:
            codes.add(code.upper())
        if not skeleton and not code:
            raise DataError(f"{source}:{line_no}: row has neither a skeleton nor a CCD code")
        n_rows += 1
    return Exclusions(
        skeletons=frozenset(skeletons),
        ccd_codes=frozenset(codes),
        sha256=hashlib.sha256(data).hexdigest(),
        source=source,
        n_rows=n_rows,
    )


def load_exclusions(path: str | Path | None = None) -> Exclusions:
    """Read an exclusion list; without ``path``, the list packaged with rdconfvae (cached).

    Raises:
        DataError: the file is missing its header or holds a malformed row.
    """
    global _DEFAULT
    if path is None:
        if _DEFAULT is None:
            ref = resources.files("rdconfvae.data").joinpath(EXCLUSIONS_FILE)
            _DEFAULT = _parse(ref.read_bytes(), f"rdconfvae.data/{EXCLUSIONS_FILE}")
        return _DEFAULT
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read exclusion list {path}: {exc}") from exc
    return _parse(data, str(path))


def inchikey_skeleton(mol: Chem.Mol) -> str:
    """First 14 characters of the standard InChIKey of ``mol``; ``""`` if InChI fails."""
    with BlockLogs():
        key = Chem.MolToInchiKey(mol)
    return key[:14] if key else ""


def is_excluded(
    mol: Chem.Mol | None = None,
    *,
    code: str | None = None,
    skeleton: str | None = None,
    exclusions: Exclusions | None = None,
) -> bool:
    """True if the molecule's CCD code or InChIKey skeleton is on the exclusion list.

    Args:
        mol: the molecule; its skeleton is computed unless ``skeleton`` is given.
        code: PDB chemical component code, if the molecule has one.
        skeleton: precomputed InChIKey skeleton (saves one InChI computation).
        exclusions: the list to check against; the packaged list by default.

    A molecule whose InChI cannot be computed is treated as excluded: it cannot be checked.
    """
    ex = load_exclusions() if exclusions is None else exclusions
    if code and code.strip().upper() in ex.ccd_codes:
        return True
    if skeleton is None:
        if mol is None:
            if code is None:
                raise ValueError("is_excluded needs a molecule, a code or a skeleton")
            return False
        skeleton = inchikey_skeleton(mol)
        if not skeleton:
            return True
    return skeleton.upper() in ex.skeletons

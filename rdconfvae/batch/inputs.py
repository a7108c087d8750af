"""Input files of the batch surfaces (``rdconfvae embed``, ``python -m rdconfvae.data build``).

:func:`read_molecules` streams ``(index, name, SMILES or Chem.Mol)`` records from SMILES, CSV
and SDF files, each optionally gzip-compressed, and answers every kind of damage one way:

- a record that cannot be read (an SDF record RDKit cannot parse, a gzip stream that ends
  early) is yielded with ``item=None`` and a reason naming the file and line, so the run
  lists it and goes on with the good records;
- a file that is not what its name says (binary data, not gzip, a CSV without a SMILES
  column, an unknown extension) raises :class:`~rdconfvae.errors.InvalidInputError` naming the
  file (and line): one clear message instead of thousands of per-line errors;
- text that is not UTF-8 is read anyway: undecodable bytes become U+FFFD and one warning
  per file names the first line (SMILES are ASCII; only names can hold other text).

Line endings may be ``\\n``, ``\\r\\n`` or ``\\r``, mixed. A UTF-8 byte-order mark is ignored.
"""

from __future__ import annotations

import csv
import io
import logging
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from rdconfvae.errors import InvalidInputError

__all__ = ["InputRecord", "INPUT_FORMATS", "input_format", "read_molecules", "count_records"]

log = logging.getLogger(__name__)

#: File name endings (before an optional ``.gz``) and the format each is read as.
INPUT_FORMATS = {
    ".smi": "smi",
    ".smiles": "smi",
    ".ism": "smi",
    ".csv": "csv",
    ".sdf": "sdf",
    ".sd": "sdf",
}
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class InputRecord:
    """One input record: its position, a name, and a SMILES / Mol (or a problem).

    ``where`` says where it came from (``"in.smi line 7"``) for error messages.
    """

    index: int
    name: str
    item: Any  # SMILES string or Chem.Mol; None when unreadable
    problem: str = ""  # why ``item`` is None
    where: str = ""


def input_format(path: str | Path, fmt: str | None = None) -> str:
    """``"smi"``, ``"csv"`` or ``"sdf"`` for ``path`` (by its extension unless ``fmt`` is given).

    Raises:
        InvalidInputError: an extension not in :data:`INPUT_FORMATS` (and no ``fmt``), or an
            unknown ``fmt``.
    """
    if fmt is not None:
        if fmt not in ("smi", "csv", "sdf"):
            raise InvalidInputError(f"input format must be smi, csv or sdf, got {fmt!r}")
        return fmt
    name = Path(path).name.lower()
    stem = name[:-3] if name.endswith(".gz") else name
    for ext, kind in INPUT_FORMATS.items():
        if stem.endswith(ext):
            return kind
    ext = Path(stem).suffix or "(none)"
    raise InvalidInputError(
        f"{path}: unknown input extension {ext}; name the file .smi/.smiles/.ism (SMILES and "
        "name per line), .csv (a 'smiles' column) or .sdf/.sd, optionally .gz, "
        "or give the format (--format smi|csv|sdf)"
    )


def _open_binary(path: Path) -> IO[bytes]:
    """The file's bytes, decompressed when it starts with the gzip magic number.

    Raises:
        InvalidInputError: a ``.gz`` name on a file that is not gzip.
    """
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == _GZIP_MAGIC:
        return _GzipReader(open(path, "rb"))  # type: ignore[return-value]
    if path.name.lower().endswith(".gz") and magic:
        raise InvalidInputError(f"{path}: not a gzip file (the name ends in .gz)")
    return open(path, "rb")


class _GzipReader(io.RawIOBase):
    """Decompressed bytes of a (multi-member) gzip file that hand out everything that can be
    decompressed before raising ``EOFError`` at a truncation (``gzip.open`` loses the block
    it was decompressing, which for a small file is all of it)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._pending = b""
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending and not self._done:
            chunk = self._raw.read(1 << 16)
            if self._z.eof:  # the next gzip member
                rest = self._z.unused_data
                if not rest and not chunk:
                    self._done = True
                    break
                self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
                chunk = rest + chunk
            elif not chunk:
                raise EOFError("compressed file ended before the end-of-stream marker")
            self._pending = self._z.decompress(chunk)
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()


def _lines(path: Path, label: str) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of a text file, any line endings, damage reported.

    Raises:
        InvalidInputError: a NUL byte (binary data), naming the line.
    """
    warned = False
    with _open_binary(path) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline=None)
        number = 0
        try:
            for number, line in enumerate(text, 1):  # noqa: B007 -- used after the loop
                if "\x00" in line:
                    raise InvalidInputError(
                        f"{label} line {number}: binary data (NUL bytes), not a text file"
                    )
                if any("\udc80" <= ch <= "\udcff" for ch in line):
                    line = line.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                    if not warned:
                        log.warning(
                            "%s line %d: not UTF-8 text; undecodable bytes read as U+FFFD "
                            "(first such line of this file)",
                            label,
                            number,
                        )
                        warned = True
                yield number, line
        except (EOFError, OSError, zlib.error) as exc:
            raise _Damaged(
                f"{label}: the file ends early or is damaged after line {number} "
                f"({type(exc).__name__}: {exc})"
            ) from exc


class _Damaged(Exception):
    """A compressed stream broke off: the records read so far stand."""


def _smi_records(path: Path, label: str) -> Iterator[tuple[int, str, str, str]]:
    """``(line, smiles, name, "")`` per SMILES line; a first line ``smiles ...`` is a header."""
    first = True
    for number, line in _lines(path, label):
        if "\t" in line:
            fields = [f.strip() for f in line.split("\t")]
        else:
            fields = line.strip().split(maxsplit=1)
        if not fields or not fields[0] or fields[0].startswith("#"):
            continue
        if first and fields[0].lower() == "smiles":
            first = False
            continue  # a header line (RDKit's SmilesMolSupplier also skips a title line)
        first = False
        yield number, fields[0], fields[1].strip() if len(fields) > 1 else "", ""


def _csv_records(path: Path, label: str) -> Iterator[tuple[int, str, str, str]]:
    numbered = _lines(path, label)
    current = [0]

    def text() -> Iterator[str]:
        for number, line in numbered:
            current[0] = number
            yield line

    reader = csv.DictReader(text())
    cols = {c.strip().lower(): c for c in reader.fieldnames or []}
    smi_col = cols.get("smiles")
    if smi_col is None:
        raise InvalidInputError(
            f"{label} line 1: no 'smiles' column (columns: {reader.fieldnames})"
        )
    name_col = cols.get("name") or cols.get("id")
    for row in reader:
        if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
            continue  # a blank line
        title = (row.get(name_col) or "").strip() if name_col else ""
        yield current[0], (row.get(smi_col) or "").strip(), title, ""


def _sdf_blocks(path: Path, label: str) -> Iterator[tuple[int, str]]:
    """``(first line, text)`` of each SDF record (up to and including ``$$$$``)."""
    start, block = 0, list[str]()
    for number, line in _lines(path, label):
        if not block:
            start = number
        block.append(line if line.endswith("\n") else line + "\n")
        if line.startswith("$$$$"):
            yield start, "".join(block)
            block = []
    if block and "".join(block).strip():
        yield start, "".join(block)  # a last record without $$$$ (RDKit accepts it)


def _sdf_records(path: Path, label: str) -> Iterator[tuple[int, Any, str, str]]:
    from rdkit import Chem
    from rdkit.rdBase import BlockLogs

    for start, block in _sdf_blocks(path, label):
        with BlockLogs():
            supplier = Chem.SDMolSupplier()
            supplier.SetData(block, removeHs=False)
            mol = supplier[0] if len(supplier) else None
        if mol is None:
            ended = "" if block.rstrip().endswith("$$$$") else " (the file ends inside it)"
            yield (
                start,
                None,
                "",
                f"unreadable SDF record{ended}: RDKit cannot parse or sanitise it",
            )
            continue
        title = mol.GetProp("_Name").strip() if mol.HasProp("_Name") else ""
        yield start, mol, title, ""


def _records(path: Path, kind: str) -> Iterator[tuple[int, Any, str, str]]:
    label = str(path)
    reader = {"smi": _smi_records, "csv": _csv_records, "sdf": _sdf_records}[kind]
    return reader(path, label)


def read_molecules(path: str | Path, fmt: str | None = None) -> Iterator[InputRecord]:
    """Stream the records of ``path`` (see the module docstring), in file order.

    Formats: ``smi`` (``SMILES name`` per line, or tab-separated columns with the name in
    the second; ``#`` comments, blank lines and a ``smiles ...`` header line skipped),
    ``csv`` (a ``smiles`` column in any case; the name from ``name`` or ``id``), ``sdf``
    (the title line is the name; explicit hydrogens and SD fields kept). Unnamed records
    are called ``mol<k>`` (``record<k>`` in an SDF), k counting records from 1.

    Raises:
        InvalidInputError: unknown extension, binary data, not gzip, no SMILES column.
        OSError: the file cannot be opened.
    """
    path = Path(path)
    kind = input_format(path, fmt)
    stem = "record" if kind == "sdf" else "mol"
    index = 0
    records = _records(path, kind)
    while True:
        try:
            line, item, title, problem = next(records)
        except StopIteration:
            return
        except _Damaged as exc:
            yield InputRecord(index, f"{stem}{index + 1}", None, str(exc), str(path))
            return
        where = f"{path.name} line {line}"
        if problem:
            problem = f"{where}: {problem}"
        yield InputRecord(index, title or f"{stem}{index + 1}", item, problem, where)
        index += 1


def count_records(path: str | Path, fmt: str | None = None) -> int:
    """Number of records :func:`read_molecules` will yield (SDF records are not parsed)."""
    path = Path(path)
    kind = input_format(path, fmt)
    label = str(path)
    if kind == "sdf":
        items: Iterator[Any] = _sdf_blocks(path, label)
    else:
        items = (_csv_records if kind == "csv" else _smi_records)(path, label)
    count = 0
    try:
        for _ in items:
            count += 1
    except _Damaged:
        count += 1  # read_molecules yields the damage as one more (failed) record
    return count

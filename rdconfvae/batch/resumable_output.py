"""Resumable output: an SDF file and an error TSV cut back to a checkpoint and appended to.

:class:`ResumableOutput` writes the results of a batch run and reports, at each checkpoint,
the byte lengths a resumed run truncates the files to; :func:`write_json_atomic` writes the
checkpoint record itself. Used by the embedding CLI (:func:`rdconfvae.batch.stream.embed_file`),
the ensemble builder and the Dask writer.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import IO, Any

from rdconfvae.batch.unit import EmbedResult
from rdconfvae.errors import InvalidInputError

__all__ = ["ResumableOutput", "write_json_atomic"]


class ResumableOutput:
    """SDF output + error TSV that can be cut back to the last checkpoint and appended to.

    Used by the embedding CLI, the ensemble builder and the Dask writer. A ``.gz`` output gets
    one gzip member per checkpoint interval (closed by :meth:`checkpoint`), so a checkpoint is
    always at a member boundary; multi-member gzip is standard gzip. A file shorter than
    its checkpoint (changed after the interrupted run) raises ``error`` (default
    :class:`InvalidInputError`). With ``lazy_errors`` the error file is created only when the
    first error is written (an old one is removed when the run starts from an empty error file).
    """

    def __init__(
        self,
        out: Path,
        errors: Path,
        out_offset: int = 0,
        err_offset: int = 0,
        *,
        error: type[Exception] = InvalidInputError,
        lazy_errors: bool = False,
    ) -> None:
        self.out_path, self.err_path = out, errors
        self.gz = out.name.lower().endswith(".gz")
        self._error = error
        self._out = self._open_at(out, out_offset)
        self._err: IO[bytes] | None = None
        try:
            if lazy_errors and err_offset == 0:
                errors.unlink(missing_ok=True)
            else:
                self._err = self._open_at(errors, err_offset)
        except Exception:
            self._out.close()
            raise
        self._segment: gzip.GzipFile | None = None

    def _open_at(self, path: Path, offset: int) -> IO[bytes]:
        if offset == 0:
            return open(path, "wb")
        fh = open(path, "r+b")
        size = fh.seek(0, os.SEEK_END)
        if size < offset:
            fh.close()
            raise self._error(
                f"cannot resume: {path} is shorter ({size} bytes) than its checkpoint "
                f"({offset} bytes); it was modified since the interrupted run"
            )
        fh.truncate(offset)  # drop whatever was written after the checkpoint
        fh.seek(offset)
        return fh

    def write_record(self, text: str) -> None:
        """Append SDF text (one or more complete records)."""
        data = text.encode("utf-8")
        if self.gz:
            if self._segment is None:
                self._segment = gzip.GzipFile(filename="", fileobj=self._out, mode="wb", mtime=0)
            self._segment.write(data)
        else:
            self._out.write(data)

    def write_error(self, name: str, error: str) -> None:
        """Append one ``name<TAB>error`` line (whitespace in either folded to spaces)."""
        if self._err is None:
            self._err = open(self.err_path, "wb")
        line = f"{' '.join(name.split())}\t{' '.join(error.split())}\n"
        self._err.write(line.encode("utf-8", "replace"))

    def write(self, result: EmbedResult) -> None:
        if result.ok:
            self.write_record(result.sdf())
        else:
            self.write_error(result.name, result.error)

    def checkpoint(self) -> tuple[int, int]:
        """Flush everything to disk; return the byte lengths of the output and error files."""
        if self._segment is not None:
            self._segment.close()  # writes the member trailer, leaves the file open
            self._segment = None
        for fh in (self._out, self._err):
            if fh is not None:
                fh.flush()
                os.fsync(fh.fileno())
        return self._out.tell(), self._err.tell() if self._err is not None else 0

    def close(self) -> tuple[int, int]:
        """:meth:`checkpoint`, then close both files (also when the checkpoint fails)."""
        try:
            return self.checkpoint()
        finally:
            self._out.close()
            if self._err is not None:
                self._err.close()

    @property
    def has_errors(self) -> bool:
        """Whether the error file exists (it holds at least one line, or an earlier run's)."""
        return self._err is not None


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON to a temporary file, sync it, and rename it over ``path`` (never half written)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)

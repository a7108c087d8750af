"""The set file: split, build (``python -m rdconfvae.data ccd``), write and load."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import os
import platform
import sys
import time
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO

import numpy as np
from rdkit import Chem, rdBase
from rdkit.Chem import rdMolDescriptors
from rdkit.rdBase import BlockLogs

from rdconfvae.data.ccd.components import default_ccd_path, iter_components, read_ccd
from rdconfvae.data.ccd.filters import FILTERS, CheckResult, check_component
from rdconfvae.data.exclusions import Exclusions, inchikey_skeleton, load_exclusions
from rdconfvae.data.records import MolRecord
from rdconfvae.errors import DataError
from rdconfvae.hashing import sha256_file

logger = logging.getLogger(__name__)


#: Name of the data file written into the output directory.
CCD_FILE_NAME = "ccd_set.npz"
#: Version of the ``.npz`` layout; :func:`load_ccd_set` refuses others.
FORMAT_VERSION = 1


#: properties (``_Name``, ``ccd_model_entry``). Coordinates are pickled as float32, exact to
#: 1e-5 A for the CCD's three-decimal coordinates; AllProps would double the size (float64
#: coordinates and per-atom computed-property lists) for nothing.
_PICKLE_OPTIONS = Chem.PropertyPickleOptions.MolProps | Chem.PropertyPickleOptions.PrivateProps
#: Share of validation molecules, in percent, from the skeleton's sha256.
VAL_PERCENT = 5


def split_of(skeleton: str) -> str:
    """Fixed split by InChIKey skeleton: ``"val"`` for about 5 % of skeletons, else ``"train"``.

    >>> split_of("BSYNRYMUTXBXSQ")  # aspirin
    'train'
    """
    h = int(hashlib.sha256(skeleton.encode("ascii")).hexdigest(), 16)
    return "val" if h % 100 < VAL_PERCENT else "train"


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    arr = np.asarray(arr)  # (np.ascontiguousarray would turn a 0-d array into 1-d)
    np.lib.format.write_array(
        buf, arr if arr.flags.c_contiguous else arr.copy(), allow_pickle=False
    )
    return buf.getvalue()


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write an ``.npz`` np.load can read, byte-identical for identical arrays.

    numpy's ``savez`` stamps the current time into every zip entry; here every entry gets the
    same fixed timestamp and permissions, and entries are stored uncompressed (the blobs are
    small pickles, and stored entries load without a decompression pass).
    """
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            info.create_system = 3
            zf.writestr(info, _npy_bytes(arr))
    os.replace(tmp, path)


def _sdf_record(mol: Chem.Mol, split: str) -> str:
    block = Chem.MolToMolBlock(mol)
    props = []
    if mol.HasProp("ccd_model_entry"):
        props.append(("ccd_model_entry", mol.GetProp("ccd_model_entry")))
    props.append(("split", split))
    return block + "".join(f">  <{k}>\n{v}\n\n" for k, v in props) + "$$$$\n"


def _write_sdf(path: Path, records: Sequence[tuple[Chem.Mol, str]]) -> None:
    """One record per molecule, named by its CCD code; gzip (fixed header) for ``.gz``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as raw:
        stream: gzip.GzipFile | IO[bytes]
        if path.suffix == ".gz":
            stream = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0)
        else:
            stream = raw
        try:
            for mol, split in records:
                stream.write(_sdf_record(mol, split).encode("utf-8"))
        finally:
            if stream is not raw:
                stream.close()
    os.replace(tmp, path)


def build_ccd_set(
    out_dir: str | Path,
    *,
    sdf: str | Path | None = None,
    limit: int | None = None,
    codes: Iterable[str] | None = None,
    ccd_path: str | Path | None = None,
    exclusions: Exclusions | str | Path | None = None,
    progress: bool | None = None,
) -> dict:
    """Build the CCD training set into ``out_dir``; return the manifest (also written).

    Writes ``out_dir/ccd_set.npz`` (see :func:`load_ccd_set`), ``out_dir/manifest.json``
    (sources and their sha256, counts per filter, output sha256, wall time, medians) and
    ``out_dir/rejected.tsv`` (code, filter, detail of every component dropped). Same inputs give
    the same ``ccd_set.npz``, ``rejected.tsv`` and SDF bytes.

    Args:
        out_dir: output directory, created if needed.
        sdf: also write the set as SDF here (gzip-compressed if the name ends in ``.gz``).
        limit: only the first ``limit`` components (in code order) of the selection.
        codes: only these CCD codes.
        ccd_path: a CCD BinaryCIF file; default the one inside the installed biotite.
        exclusions: an exclusion list or its path; default the packaged list.
        progress: show a progress bar; None shows one when stderr is a terminal.

    Raises:
        DataError: the CCD or exclusion file is malformed, or a code in ``codes`` is unknown.
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if exclusions is None or isinstance(exclusions, (str, Path)):
        exclusions = load_exclusions(exclusions)
    ccd_path = Path(ccd_path) if ccd_path is not None else default_ccd_path()
    if not ccd_path.is_file():
        raise DataError(f"CCD file not found: {ccd_path}")
    if limit is not None and limit < 0:
        raise ValueError("limit must be >= 0")
    code_list = None if codes is None else [c for c in codes if c.strip()]

    logger.info("reading %s", ccd_path)
    tables = read_ccd(ccd_path)
    n_components = len(tables.comp["id"])
    selected = list(iter_components(tables, code_list))
    if limit is not None:
        selected = selected[:limit]

    dropped = {name: 0 for name, _ in FILTERS}
    rejected: list[tuple[str, str, str]] = []
    kept: list[tuple[str, Chem.Mol, str]] = []  # code, mol, skeleton
    first_of: dict[str, str] = {}
    bar = tqdm(
        selected,
        desc="CCD components",
        unit="comp",
        disable=(not sys.stderr.isatty()) if progress is None else not progress,
        dynamic_ncols=True,
    )
    with BlockLogs():
        for comp in bar:
            res = check_component(comp)
            mol = res.mol
            if res.ok and mol is not None:
                skeleton = inchikey_skeleton(mol)
                if not skeleton:
                    res = CheckResult(None, "excluded", "no InChIKey: cannot be checked")
                elif comp.code.upper() in exclusions.ccd_codes:
                    res = CheckResult(None, "excluded", "CCD code on the exclusion list")
                elif skeleton in exclusions.skeletons:
                    res = CheckResult(
                        None, "excluded", f"skeleton {skeleton} on the exclusion list"
                    )
                elif skeleton in first_of:
                    res = CheckResult(None, "duplicate", f"same skeleton as {first_of[skeleton]}")
                else:
                    first_of[skeleton] = comp.code
                    kept.append((comp.code, mol, skeleton))
                    continue
            reason = str(res.reason)  # a failed check always names its filter
            dropped[reason] += 1
            rejected.append((comp.code, reason, res.detail.replace("\t", " ").replace("\n", " ")))
    bar.close()

    names = [c for c, _, _ in kept]
    skeletons = [s for _, _, s in kept]
    splits = [split_of(s) for s in skeletons]
    blobs = [m.ToBinary(_PICKLE_OPTIONS) for _, m, _ in kept]
    offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(b) for b in blobs])
    arrays = {
        "format_version": np.array(FORMAT_VERSION, dtype=np.int64),
        "codes": np.array(names, dtype=f"<U{max([len(c) for c in names], default=1)}"),
        "skeletons": np.array(skeletons, dtype="<U14"),
        "splits": np.array(splits, dtype="<U5"),
        "offsets": offsets,
        "blobs": np.frombuffer(b"".join(blobs), dtype=np.uint8),
    }
    npz_path = out_dir / CCD_FILE_NAME
    _write_npz(npz_path, arrays)
    with open(out_dir / "rejected.tsv", "w", encoding="utf-8", newline="\n") as fh:
        fh.write("code\tfilter\tdetail\n")
        fh.writelines(f"{c}\t{r}\t{d}\n" for c, r, d in rejected)
    sdf_info = None
    if sdf is not None:
        sdf = Path(sdf)
        _write_sdf(sdf, [(m, sp) for (_, m, _), sp in zip(kept, splits, strict=True)])
        sdf_info = {"file": str(sdf), "sha256": sha256_file(sdf), "bytes": sdf.stat().st_size}

    heavy = [m.GetNumHeavyAtoms() for _, m, _ in kept]
    rot = [rdMolDescriptors.CalcNumRotatableBonds(Chem.RemoveHs(m)) for _, m, _ in kept]
    remaining = len(selected)
    filters = []
    for name, rule in FILTERS:
        remaining -= dropped[name]
        filters.append(
            {"name": name, "rule": rule, "dropped": dropped[name], "remaining": remaining}
        )
    manifest = {
        "format": "rdconfvae-ccd-set",
        "format_version": FORMAT_VERSION,
        "output": {
            "file": CCD_FILE_NAME,
            "sha256": sha256_file(npz_path),
            "bytes": npz_path.stat().st_size,
            "molecules": len(kept),
            "train": splits.count("train"),
            "val": splits.count("val"),
        },
        "source": {
            "ccd_file": str(ccd_path),
            "ccd_sha256": sha256_file(ccd_path),
            "ccd_bytes": ccd_path.stat().st_size,
            "ccd_date": tables.latest_date,
            "ccd_date_note": "latest chem_comp.pdbx_modified_date in the file (it carries no "
            "release date)",
            "ccd_components": n_components,
            "biotite_version": _version("biotite"),
        },
        "exclusions": {
            "file": exclusions.source,
            "sha256": exclusions.sha256,
            "rows": exclusions.n_rows,
            "skeletons": len(exclusions.skeletons),
            "ccd_codes": len(exclusions.ccd_codes),
        },
        "selection": {"codes": code_list, "limit": limit, "components": len(selected)},
        "filters": filters,
        "split": {"rule": f"val if int(sha256(skeleton), 16) % 100 < {VAL_PERCENT}"},
        "stats": {
            "median_heavy_atoms": float(np.median(heavy)) if heavy else None,
            "median_rotatable_bonds": float(np.median(rot)) if rot else None,
            "rotatable_bonds_definition": "RDKit CalcNumRotatableBonds (strict) without H",
        },
        "sdf": sdf_info,
        "software": {
            "rdkit": rdBase.rdkitVersion,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "wall_time_s": round(time.perf_counter() - t0, 1),
    }
    with open(out_dir / "manifest.json", "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, indent=2)
        fh.write("\n")
    logger.info("kept %d of %d components in %s", len(kept), len(selected), npz_path)
    return manifest


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


_REQUIRED = ("format_version", "codes", "splits", "offsets", "blobs")


def load_ccd_set(path: str | Path, split: str | None = None) -> list[MolRecord]:
    """Load a set written by :func:`build_ccd_set`.

    Args:
        path: the output directory or the ``ccd_set.npz`` file itself.
        split: ``"train"`` or ``"val"`` for one split; None for all molecules.

    Returns:
        One :class:`MolRecord` per molecule in CCD code order: ``name`` the CCD code, ``mol``
        with explicit H and the model coordinates as its only conformer, ``weights`` ``[1.0]``,
        ``energies`` None.

    Raises:
        DataError: the file is missing, not a CCD set, or corrupted.
    """
    if split not in (None, "train", "val"):
        raise ValueError(f"split must be 'train', 'val' or None, got {split!r}")
    p = Path(path)
    if p.is_dir():
        p = p / CCD_FILE_NAME
    if not p.is_file():
        raise DataError(f"CCD set not found: {p}")
    try:
        with np.load(p, allow_pickle=False) as z:
            missing = [k for k in _REQUIRED if k not in z.files]
            if missing:
                raise DataError(f"{p}: not a CCD set, missing {', '.join(missing)}")
            fv = z["format_version"]
            version = int(fv.reshape(-1)[0]) if fv.size == 1 else -1
            if version != FORMAT_VERSION:
                raise DataError(
                    f"{p}: format version {version}, this rdconfvae reads {FORMAT_VERSION}; "
                    "rebuild with python -m rdconfvae.data ccd"
                )
            codes, splits = z["codes"], z["splits"]
            offsets, blobs = z["offsets"], z["blobs"]
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{p}: cannot read CCD set ({exc})") from exc
    n = len(codes)
    if (
        len(splits) != n
        or offsets.shape != (n + 1,)
        or blobs.dtype != np.uint8
        or (n and (offsets[0] != 0 or offsets[-1] != len(blobs) or np.any(np.diff(offsets) <= 0)))
    ):
        raise DataError(f"{p}: inconsistent array lengths or offsets (corrupted file)")
    weights = np.ones(1, dtype=np.float64)
    records = []
    raw = blobs.tobytes()
    for i in range(n):
        sp = str(splits[i])
        if split is not None and sp != split:
            continue
        try:
            mol = Chem.Mol(raw[offsets[i] : offsets[i + 1]])
        except RuntimeError as exc:
            raise DataError(f"{p}: molecule {codes[i]} cannot be unpickled ({exc})") from exc
        if mol.GetNumConformers() < 1:
            raise DataError(f"{p}: molecule {codes[i]} has no conformer")
        records.append(MolRecord(name=str(codes[i]), mol=mol, weights=weights.copy(), split=sp))
    return records

"""One molecule in, one picklable result out: the unit of work of every batch surface.

The command line (``rdconfvae embed``), the DataFrame helpers
(:mod:`rdconfvae.integrations.pandas`) and the Dask helpers
(:mod:`rdconfvae.integrations.dask`) all embed
molecules through :func:`embed_one`, so a molecule gets the same conformers
whichever surface, process or partition handles it (the seed is per molecule,
not per run position).

A failure of one molecule (bad SMILES, unsupported element, timeout, ...) is a
:class:`EmbedResult` with ``status == "failed"`` and the reason; it never raises,
so a batch goes on. Faults of the installation (unreadable weights) do raise:
every molecule would fail the same way.

For the file runner (:mod:`rdconfvae.batch.stream`) a molecule comes as an input record:
:func:`embed_record` embeds it, keeping the lines logged meanwhile with its result
(:func:`collect_logs`), and :func:`crashed_result` stands for a record whose worker
process died.
"""

from __future__ import annotations

import io
import logging
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from rdkit import Chem, rdBase

from rdconfvae.batch.inputs import InputRecord
from rdconfvae.errors import InvalidInputError, RdConfVAEError, WeightsError
from rdconfvae.params import ALIASES, EmbedParameters, check_count, validate

__all__ = [
    "EmbedOptions",
    "EmbedResult",
    "embed_one",
    "to_mol",
    "conformer_records",
    "collect_logs",
    "embed_record",
    "crashed_result",
]

#: RDKit pickle flags that keep molecule, atom and conformer properties (name, energies).
_PICKLE_PROPS = Chem.PropertyPickleOptions.AllProps


@dataclass(frozen=True)
class EmbedOptions:
    """Options of :func:`rdconfvae.embed` for batch runs (picklable, hashable).

    ``seed`` defaults to 0 here (reproducible batches); ``add_hs`` adds explicit
    hydrogens (with coordinates when the input has a conformer) before embedding,
    so the output carries complete 3D molecules. ``polish_iters`` sets
    ``EmbedParameters.polishIters`` (``None``: the package default; 0: raw model output).
    """

    n: int = 10
    mmff: bool = False
    seed: int = 0
    prune_rms: float = -1.0
    timeout: float | None = None
    fallback: str = "etkdg"
    num_threads: int = 1
    add_hs: bool = True
    polish_iters: int | None = None

    def __post_init__(self) -> None:
        if check_count(self.n, "n") <= 0:
            raise InvalidInputError(f"n must be positive, got {self.n}")
        if not isinstance(self.add_hs, bool):
            raise InvalidInputError(f"add_hs must be True or False, got {self.add_hs!r}")
        opts = EmbedParameters(
            mmff=self.mmff,
            randomSeed=self.seed,
            pruneRmsThresh=self.prune_rms,
            timeout=self.timeout or 0.0,
            fallback=self.fallback,
            numThreads=self.num_threads,
        )
        if self.polish_iters is not None:
            opts.polishIters = self.polish_iters
        validate(opts, ALIASES)  # the same checks and messages as embed()

    def embed_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`rdconfvae.embed`."""
        kw = asdict(self)
        kw.pop("add_hs")
        kw.pop("n")
        polish = kw.pop("polish_iters")
        if polish is not None:
            kw["params"] = EmbedParameters(polishIters=polish)
        return kw


@dataclass(frozen=True)
class EmbedResult:
    """Outcome for one input molecule.

    ``mol_binary`` is the molecule with its conformers as an RDKit binary pickle
    (all properties kept: name, conformer energies, generator); ``None`` on failure.
    """

    index: int
    name: str
    status: str  # "ok" or "failed"
    error: str = ""  # "ErrorType: message" when failed
    mol_binary: bytes | None = field(default=None, repr=False)
    n_conformers: int = 0
    seconds: float = 0.0
    messages: tuple[str, ...] = ()  # log lines about this molecule (see collect_logs)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def mol(self) -> Chem.Mol | None:
        """The embedded molecule (a new object on every access), or None on failure."""
        if self.mol_binary is None:
            return None
        return Chem.Mol(self.mol_binary)  # type: ignore[call-overload]  # stubs lack Mol(bytes)

    def sdf(self) -> str:
        """SDF text, one record per conformer (see :func:`conformer_records`); '' on failure."""
        mol = self.mol
        return "" if mol is None else conformer_records(mol, self.name)


def to_mol(item: Any) -> Chem.Mol:
    """A ``Chem.Mol`` from a molecule, a SMILES string or an MDL mol block.

    Raises:
        InvalidInputError: None, empty or unparsable input, naming what was given.
    """
    if isinstance(item, Chem.Mol):
        return Chem.Mol(item)
    if item is None or (isinstance(item, float) and item != item):  # None or pandas NaN
        raise InvalidInputError("missing molecule (None/NaN)")
    if not isinstance(item, str):
        raise InvalidInputError(f"expected a Chem.Mol or SMILES string, got {type(item).__name__}")
    text = item.strip()
    if not text:
        raise InvalidInputError("empty SMILES")
    if "\n" in text:
        mol = Chem.MolFromMolBlock(item, removeHs=False)
        if mol is None:
            raise InvalidInputError("unparsable mol block")
        return mol
    mol = Chem.MolFromSmiles(text)
    if mol is None:
        raise InvalidInputError(f"invalid SMILES {text!r}")
    return mol


def embed_one(
    item: Any, name: str = "", index: int = 0, options: EmbedOptions | None = None
) -> EmbedResult:
    """Embed one molecule (``Chem.Mol``, SMILES or mol block); never raises for its faults.

    Raises:
        WeightsError: the model cannot be loaded (every molecule would fail).
    """
    from rdconfvae.api import embed

    opts = options or EmbedOptions()
    start = time.perf_counter()
    try:
        mol = to_mol(item)
        if not name and mol.HasProp("_Name"):
            name = mol.GetProp("_Name")
        if opts.add_hs:
            mol = Chem.AddHs(mol, addCoords=mol.GetNumConformers() > 0)
        ids = embed(mol, opts.n, **opts.embed_kwargs())
        if name:
            mol.SetProp("_Name", name)
        return EmbedResult(
            index=index,
            name=name,
            status="ok",
            mol_binary=mol.ToBinary(_PICKLE_PROPS),
            n_conformers=len(ids),
            seconds=time.perf_counter() - start,
        )
    except WeightsError:
        raise
    except RdConfVAEError as exc:
        error = f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # noqa: BLE001 -- one molecule must not end a batch
        error = f"{type(exc).__name__}: {exc}"
    return EmbedResult(
        index=index,
        name=name,
        status="failed",
        error=error.replace("\t", " ").replace("\n", " "),
        seconds=time.perf_counter() - start,
    )


def conformer_records(mol: Chem.Mol, name: str = "") -> str:
    """SDF text with one record per conformer.

    Each record carries the molecule's name, ``conformer_id`` and the conformer's
    own properties (``MMFF_ENERGY`` in kcal/mol, ``MMFF_CONVERGED``,
    ``rdconfvae_generator``) as SD data fields.
    """
    buf = io.StringIO()
    writer = Chem.SDWriter(buf)
    work = Chem.Mol(mol)
    if name:
        work.SetProp("_Name", name)
    for conf in mol.GetConformers():
        for prop in conf.GetPropNames():
            work.SetProp(prop, conf.GetProp(prop))
        work.SetIntProp("conformer_id", conf.GetId())
        writer.write(work, confId=conf.GetId())
    writer.close()
    return buf.getvalue()


# ------------------------------------------ one input record: its log lines, its failure


class _Collector(logging.Handler):
    """Keeps the messages logged while one molecule is embedded."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage().strip()
        if record.name == "py.warnings":
            # "path:line: Category: message\n  source line" -> "Category: message"
            first = text.splitlines()[0] if text else ""
            parts = first.split(": ", 1)
            text = parts[1] if len(parts) == 2 else first
        else:
            text = "RDKit: " + " ".join(_RDKIT_TIME.sub("", text).split())
        if not self.lines or self.lines[-1] != text[:500]:  # RDKit often says it twice
            self.lines.append(text[:500])


_collector: _Collector | None = None
_RDKIT_TIME = re.compile(r"^\[\d\d:\d\d:\d\d\] ")


def collect_logs() -> Callable[[], None]:
    """Keep RDKit's log and Python warnings of this process with each :func:`embed_record` result.

    RDKit logs to Python's ``logging`` (``rdBase.LogToPythonLogger``) and warnings go to
    logging (``logging.captureWarnings``); both are kept per molecule in
    :attr:`EmbedResult.messages` instead of being printed as they come, so lines from
    worker processes neither interleave with the caller's nor lose their molecule.

    Returns:
        A function undoing it: warnings printed again, the ``rdkit`` logger's handlers back
        (RDKit keeps logging through Python, to stderr as RDKit does in Jupyter).
    """
    global _collector
    if _collector is not None:
        return lambda: None
    rdBase.LogToPythonLogger()
    logging.captureWarnings(True)
    collector = _collector = _Collector()
    saved = []
    for name in ("rdkit", "py.warnings"):
        logger = logging.getLogger(name)
        saved.append((logger, list(logger.handlers), logger.level, logger.propagate))
        for handler in list(logger.handlers):  # rdkit's own handler prints to stderr
            logger.removeHandler(handler)
        logger.addHandler(collector)
        logger.setLevel(logging.INFO)
        logger.propagate = False

    def restore() -> None:
        global _collector
        logging.captureWarnings(False)
        for logger, handlers, level, propagate in saved:
            logger.removeHandler(collector)
            for handler in handlers:
                logger.addHandler(handler)
            logger.setLevel(level)
            logger.propagate = propagate
        _collector = None

    return restore


def embed_record(record: InputRecord, options: EmbedOptions) -> EmbedResult:
    """:func:`embed_one` for a record; a failure's reason names where the record is (and
    RDKit's first message about it); the lines logged meanwhile are kept with the result."""
    if record.item is None:
        problem = f"InvalidInputError: {record.problem}"
        return EmbedResult(record.index, record.name, "failed", problem)
    if _collector is not None:
        _collector.lines = []
    result = embed_one(record.item, record.name, record.index, options)
    messages = tuple(_collector.lines) if _collector is not None else ()
    if not result.ok:
        where = [record.where] if record.where else []
        where += [m for m in messages if m.startswith("RDKit: ")][:1]
        if where:
            result = replace(result, error=f"{result.error} ({'; '.join(where)})")
    if messages:
        result = replace(result, messages=messages)
    return result


def crashed_result(record: InputRecord) -> EmbedResult:
    """The result of a record whose worker process died while embedding it (twice)."""
    where = f" ({record.where})" if record.where else ""
    return EmbedResult(
        record.index,
        record.name,
        "failed",
        "EmbeddingFailedError: the worker process embedding this molecule died (killed by a "
        f"signal or crashed in native code), also when retried alone{where}",
    )

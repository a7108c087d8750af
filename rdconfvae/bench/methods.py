"""The generators compared (ETKDGv3, CONFORGE, rdconfvae) and the runner that times them."""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from rdkit import Chem
from rdkit.Chem import rdDistGeom

from rdconfvae.forcefield.mmff import mmff_minimize

log = logging.getLogger(__name__)

BASE_METHODS = ("rdconfvae", "rdconfvae-raw", "rdconfvae-mmff", "etkdg", "conforge")
DEFAULT_METHODS = "rdconfvae,rdconfvae+mmff,etkdg,etkdg+mmff,conforge"
#: Refinement suffixes: keyword arguments of :func:`rdconfvae.forcefield.mmff.mmff_minimize`.
REFINERS: dict[str, dict[str, Any]] = {
    "mmff": {},  # the package default: MMFF94s, distance-dependent dielectric eps = 4r
    "mmffgas": {"dielectric": "constant", "dielectric_constant": 1.0},
}


#: Ring size from which CONFORGE runs in AUTO mode (its macrocycle handling).
MACROCYCLE_RING_SIZE = 12


def split_method(method: str) -> tuple[str, str | None]:
    """``"etkdg+mmff"`` -> ``("etkdg", "mmff")``; ``"etkdg"`` -> ``("etkdg", None)``."""
    base, _, refine = method.partition("+")
    return base, (refine or None)


class MethodError(RuntimeError):
    """A generator produced no usable conformer; the message is the recorded reason."""


def run_etkdg(mol: Chem.Mol, n: int, seed: int, timeout: float | None) -> str | None:
    params = rdDistGeom.ETKDGv3()
    params.randomSeed = int(seed)  # type: ignore[assignment]  # rdkit stubs
    params.numThreads = 1  # type: ignore[assignment]
    if timeout:
        params.timeout = int(math.ceil(timeout))  # type: ignore[assignment]
    ids = rdDistGeom.EmbedMultipleConfs(mol, int(n), params)
    if len(ids) == 0:
        raise MethodError("ETKDG embedding failed (0 conformers)")
    return None


class _Conforge:
    """CONFORGE, set up once per run as in CDPKit's ``gen_confs.py`` example."""

    def __init__(self, timeout: float | None) -> None:
        try:
            import CDPL
            import CDPL.Base
            import CDPL.Chem
            import CDPL.ConfGen
        except ImportError as exc:
            raise MethodError(
                "cdpkit is not installed (pip install 'rdconfvae[bench]' or cdpkit)"
            ) from exc
        self.base, self.chem, self.confgen = CDPL.Base, CDPL.Chem, CDPL.ConfGen
        try:
            self.version = importlib.metadata.version("cdpkit")
        except importlib.metadata.PackageNotFoundError:  # pragma: no cover
            self.version = str(getattr(CDPL, "VERSION", "?"))
        self.gen = CDPL.ConfGen.ConformerGenerator()
        self.gen.settings.assign(CDPL.ConfGen.ConformerGeneratorSettings.DEFAULT)
        if timeout:
            self.gen.settings.timeout = int(timeout * 1000)
        codes = CDPL.ConfGen.ReturnCode
        self.code_names = {getattr(codes, k): k for k in dir(codes) if k.isupper()}
        self.ok_codes = {codes.SUCCESS, codes.TOO_MUCH_SYMMETRY}

    def settings(self, n: int) -> dict[str, object]:
        s, cg = self.gen.settings, self.confgen

        def name(enum: Any, value: Any) -> Any:
            return next((k for k in dir(enum) if k.isupper() and getattr(enum, k) == value), value)

        return {
            "cdpkit": self.version,
            "preset": "ConformerGeneratorSettings.DEFAULT (= MEDIUM_SET_DIVERSE)",
            "sampling": "SYSTEMATIC; AUTO for molecules with a ring of >= "
            f"{MACROCYCLE_RING_SIZE} atoms",
            "max_output_conformers": n,
            "energy_window_kcal": s.energyWindow,
            "min_rmsd_A": s.minRMSD,
            "timeout_s": s.timeout / 1000,
            "sample_tolerance_ranges": s.sampleAngleTolRanges,
            "enumerate_rings": s.enumRings,
            "nitrogen_enumeration": name(cg.NitrogenEnumerationMode, s.nitrogenEnumMode),
            "from_scratch": s.genCoordsFromScratch,
            "force_field_systematic": name(cg.ForceFieldType, s.forceFieldTypeSystematic),
            "force_field_stochastic": name(cg.ForceFieldType, s.forceFieldTypeStochastic),
            "strict_mmff_parameterization": s.strictForceFieldParam,
            "max_refinement_iterations": s.maxNumRefinementIterations,
            "max_sampled_conformers": s.maxNumSampledConformers,
            "sample_het_atom_hydrogens": s.sampleHetAtomHydrogens,
            "input": "MDL mol block of the rebuilt graph with explicit H and 2D coordinates "
            "(stereo from wedges), atom order kept",
        }

    def __call__(self, mol: Chem.Mol, n: int, seed: int, timeout: float | None) -> str | None:
        from rdkit.Chem import rdDepictor

        flat = Chem.Mol(mol)
        rdDepictor.Compute2DCoords(flat)
        block = Chem.MolToMolBlock(flat)
        cmol = self.chem.BasicMolecule()
        if not self.chem.MOLMoleculeReader(self.base.StringIOStream(block)).read(cmol):
            raise MethodError("CDPKit could not read the mol block")
        self.confgen.prepareForConformerGeneration(cmol)
        macro = any(len(r) >= MACROCYCLE_RING_SIZE for r in mol.GetRingInfo().AtomRings())
        modes = self.confgen.ConformerSamplingMode
        self.gen.settings.samplingMode = modes.AUTO if macro else modes.SYSTEMATIC
        self.gen.settings.maxNumOutputConformers = int(n)
        status = self.gen.generate(cmol)
        if status not in self.ok_codes:
            raise MethodError(f"CONFORGE: {self.code_names.get(status, status)}")
        n_atoms = mol.GetNumAtoms()
        if cmol.numAtoms != n_atoms or any(
            self.chem.getType(cmol.getAtom(i)) != mol.GetAtomWithIdx(i).GetAtomicNum()
            for i in range(n_atoms)
        ):
            raise MethodError("CONFORGE: atom order differs from the input")
        for i in range(self.gen.getNumConformers()):
            xyz = np.asarray(self.gen.getConformer(i).toArray(False), dtype=np.float64)
            conf = Chem.Conformer(n_atoms)
            conf.SetPositions(xyz[:n_atoms])
            conf.Set3D(True)
            mol.AddConformer(conf, assignId=True)
        if mol.GetNumConformers() == 0:
            raise MethodError("CONFORGE: 0 conformers")
        if status != self.confgen.ReturnCode.SUCCESS:
            return f"CONFORGE: {self.code_names.get(status, status)}"
        return None


def run_rdconfvae(
    mol: Chem.Mol,
    n: int,
    seed: int,
    timeout: float | None,
    mmff: bool = False,
    polish: int | None = None,
) -> str | None:
    """``polish``: ``polishIters`` (None: the package default)."""
    try:
        from rdconfvae import EmbedParameters, embed
    except ImportError as exc:
        raise MethodError(f"rdconfvae.embed is not available: {exc}") from exc
    kwargs: dict[str, Any] = {"n": int(n), "seed": int(seed), "mmff": mmff}
    if polish is not None:
        kwargs["params"] = EmbedParameters(polishIters=int(polish))
    if timeout:
        kwargs["timeout"] = float(timeout)
    ids = embed(mol, **kwargs)
    if len(ids) == 0:
        raise MethodError("rdconfvae.embed returned no conformer")
    return None


def uses_rdconfvae(methods: Sequence[str]) -> bool:
    """Whether any of ``methods`` runs the package's model."""
    return any(split_method(m)[0].startswith("rdconfvae") for m in methods)


def rdconfvae_weights() -> dict[str, Any]:
    """Which model the rdconfvae methods embed with (for the report): its folder, the
    sha256 of its TorchScript file (verified on load), and the training preset and epoch
    its manifest records; ``{"error": ...}`` when it does not load."""
    try:
        from rdconfvae.model.store import load_model

        loaded = load_model()
    except Exception as exc:  # noqa: BLE001 - the methods record the failure per molecule
        return {"error": short_error(exc)}
    manifest = loaded.manifest
    training = manifest.get("training", {})
    validation = manifest.get("validation", {})
    return {
        "dir": str(loaded.path.parent),
        "sha256": manifest.get("sha256"),
        "preset": training.get("preset"),
        "epoch": validation.get("epoch"),
        "val_median_min_rmsd": validation.get("val_median_min_rmsd"),
    }


@dataclass
class MethodRun:
    """Outcome of one method on one molecule."""

    mol: Chem.Mol | None
    cpu_s: float
    n_confs: int
    error: str | None = None
    note: str | None = None
    mmff_not_converged: int | None = None


def parse_methods(text: str) -> list[str]:
    methods = [m.strip() for m in text.split(",") if m.strip()]
    if not methods:
        raise ValueError("no method given")
    for m in methods:
        base, refine = split_method(m)
        if base not in BASE_METHODS or (refine is not None and refine not in REFINERS):
            raise ValueError(
                f"unknown method {m!r}; choose from {', '.join(BASE_METHODS)} "
                f"(optionally with +{' or +'.join(REFINERS)})"
            )
    if len(set(methods)) != len(methods):
        raise ValueError("a method is listed twice")
    return methods


def short_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:200] if not isinstance(exc, MethodError) else text


class Runner:
    """Runs the requested methods on one molecule, reusing base conformers for +mmff."""

    def __init__(self, methods: Sequence[str], timeout: float | None) -> None:
        self.methods = list(methods)
        self.timeout = timeout
        self.generators: dict[str, Callable[..., str | None]] = {}
        self.setup_errors: dict[str, str] = {}
        self.conforge: _Conforge | None = None
        for base in dict.fromkeys(split_method(m)[0] for m in methods):
            if base == "etkdg":
                self.generators[base] = run_etkdg
            elif base == "rdconfvae":
                self.generators[base] = run_rdconfvae
            elif base == "rdconfvae-mmff":
                self.generators[base] = functools.partial(run_rdconfvae, mmff=True)
            elif base == "rdconfvae-raw":
                self.generators[base] = functools.partial(run_rdconfvae, polish=0)
            elif base == "conforge":
                try:
                    self.conforge = _Conforge(timeout)
                    self.generators[base] = self.conforge
                except MethodError as exc:
                    self.setup_errors[base] = str(exc)

    def warm_up(self) -> None:
        """One untimed call per generator (loads libraries, model weights, caches)."""
        mol = Chem.AddHs(Chem.MolFromSmiles("CC(=O)Nc1ccc(O)cc1"))
        for base, gen in self.generators.items():
            try:
                gen(Chem.Mol(mol), 2, 1, self.timeout)
            except Exception as exc:  # noqa: BLE001 - reported per molecule later
                log.warning("warm-up of %s failed: %s", base, short_error(exc))

    def _base(self, base: str, mol: Chem.Mol, n: int, seed: int) -> MethodRun:
        if base in self.setup_errors:
            return MethodRun(None, 0.0, 0, error=self.setup_errors[base])
        work = Chem.Mol(mol)
        t0 = time.process_time()
        try:
            note = self.generators[base](work, n, seed, self.timeout)
        except Exception as exc:  # noqa: BLE001 - a generator failure is a result
            return MethodRun(None, time.process_time() - t0, 0, error=short_error(exc))
        cpu = time.process_time() - t0
        return MethodRun(work, cpu, work.GetNumConformers(), note=note)

    def run(self, mol: Chem.Mol, n: int, seed: int) -> dict[str, MethodRun]:
        out: dict[str, MethodRun] = {}
        bases: dict[str, MethodRun] = {}
        for method in self.methods:
            base, refine = split_method(method)
            if base not in bases:
                bases[base] = self._base(base, mol, n, seed)
            run = bases[base]
            if refine is None:
                out[method] = run
                continue
            if run.mol is None:
                out[method] = MethodRun(None, run.cpu_s, 0, error=run.error)
                continue
            work = Chem.Mol(run.mol)
            t0 = time.process_time()
            try:
                res = mmff_minimize(work, **REFINERS[refine])
            except Exception as exc:  # noqa: BLE001
                out[method] = MethodRun(
                    None, run.cpu_s + time.process_time() - t0, 0, error=f"MMFF: {short_error(exc)}"
                )
                continue
            cpu = run.cpu_s + time.process_time() - t0
            if res is None:
                out[method] = MethodRun(
                    work,
                    cpu,
                    work.GetNumConformers(),
                    note="MMFF could not type the molecule: conformers left unrefined",
                )
            else:
                out[method] = MethodRun(
                    work,
                    cpu,
                    work.GetNumConformers(),
                    note=run.note,
                    mmff_not_converged=sum(not r.converged for r in res),
                )
        return out

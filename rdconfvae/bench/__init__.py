"""Conformer-generator benchmarks: bioactive poses, ensemble coverage, chemical validity.

Usage::

    python -m rdconfvae.bench platinum  --data PLATINUM.sdf.gz --methods etkdg,conforge -n 50
    python -m rdconfvae.bench ensembles --data dft_public.sdf.gz --methods etkdg,rdconfvae
    python -m rdconfvae.bench validity  --data PLATINUM.sdf.gz --methods etkdg,etkdg+mmff -n 10
    python -m rdconfvae.bench threads   --data PLATINUM.sdf.gz -n 50 --limit 40 --threads 2
    python -m rdconfvae.bench speed     [--parts small,macrocycle,first-call,cli]

Every method runs on the same molecules, interleaved per molecule, in one process, one
thread. Each molecule's graph is rebuilt without 3D (canonical isomeric SMILES of the
reference's heavy atoms, stereo perceived from its 3D coordinates, then ``Chem.AddHs``), so no
reference coordinate reaches a generator. CPU time is ``time.process_time`` around the
generator call (plus MMFF for ``+mmff``); RMSD evaluation is not timed.

Methods (``--methods``, comma-separated):

* ``etkdg``: ``EmbedMultipleConfs(mol, n, ETKDGv3)`` with ``randomSeed=--seed``, one thread.
* ``conforge``: CDPKit's CONFORGE (optional ``cdpkit``), the authors' default preset
  (``ConformerGeneratorSettings.DEFAULT`` = ``MEDIUM_SET_DIVERSE``: 15 kcal/mol energy window,
  0.5 A RMSD diversity threshold) with at most ``n`` output conformers; systematic sampling,
  except for molecules with a ring of 12 or more atoms, which get CONFORGE's AUTO mode (its
  stochastic macrocycle sampler). The exact settings go into the report.
* ``rdconfvae``: ``rdconfvae.embed(mol, n=n, seed=seed)`` (the default output: model
  conformers with the short MMFF polish).
* ``rdconfvae-raw``: the same with ``polishIters=0``: the model's conformers as decoded and
  solved, no force field at all.
* ``rdconfvae-mmff``: ``rdconfvae.embed(mol, n=n, seed=seed, mmff=True)``, the package's own
  refined path: the same MMFF as ``+mmff``, then conformers whose declared stereo MMFF changed
  are replaced by new samples (what users of ``mmff=True`` get; ``+mmff`` keeps them).
* ``<method>+mmff``: the method's conformers, then :func:`rdconfvae.forcefield.mmff.mmff_minimize`
  (MMFF94s, eps = 4r) for every generator alike; ``<method>+mmffgas`` the same in the gas
  phase (eps = 1), to compare the dielectrics. The base method's conformers of the same
  molecule are reused when the base method is also run (same seed, same coordinates) and its
  CPU time is added.

Tasks and outputs (in ``--out``, default ``benchmarks/results/<task>-<date>``): ``report.md``,
``results.json`` (per molecule and method) and PNG plots when matplotlib is installed.

Modules: :mod:`~rdconfvae.bench.records` (reading, sampling, the generator input),
:mod:`~rdconfvae.bench.methods` (the generators and the timed runner),
:mod:`~rdconfvae.bench.run` (a run and its evaluation), :mod:`~rdconfvae.bench.summary`,
:mod:`~rdconfvae.bench.report` (Markdown), :mod:`~rdconfvae.bench.plots`,
:mod:`~rdconfvae.bench.shards` (``--shard I/K`` and ``--merge``: one run over several processes),
:mod:`~rdconfvae.bench.threads` (the ``threads`` task), :mod:`~rdconfvae.bench.speed` (the
``speed`` task: small molecules, a macrolide with MMFF, the first call and the CLI, each
beside RDKit or its own floor), :mod:`~rdconfvae.bench.throughput`
(Dask throughput, ``python -m rdconfvae.integrations.dask bench``) and :mod:`~rdconfvae.bench.cli`.
"""

from __future__ import annotations

from rdconfvae.bench import speed
from rdconfvae.bench.cli import TASKS, build_parser, main
from rdconfvae.bench.methods import (
    BASE_METHODS,
    REFINERS,
    MethodError,
    MethodRun,
    parse_methods,
    split_method,
)
from rdconfvae.bench.records import (
    ROT_BINS,
    Record,
    input_mol,
    load_records,
    rot_bin_label,
    select_records,
)
from rdconfvae.bench.run import run_benchmark
from rdconfvae.bench.summary import summarize

__all__ = [
    "Record",
    "TASKS",
    "BASE_METHODS",
    "REFINERS",
    "ROT_BINS",
    "rot_bin_label",
    "MethodError",
    "MethodRun",
    "build_parser",
    "load_records",
    "select_records",
    "input_mol",
    "parse_methods",
    "run_benchmark",
    "split_method",
    "summarize",
    "speed",
    "main",
]

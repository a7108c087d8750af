"""Robustness at library scale (issue 21): every input answered, streaming, kill/resume, bad files.

Three parts, each writing into ``benchmarks/results/robustness/`` (``--out``):

``embed``
    Every molecule of ``../shared/data/smiles/train_pool.smi``, the GEOM-Drugs test SMILES and
    ``benchmarks/robustness/awkward.smi`` (awkward real chemistry, by category) through the
    batch path the CLI uses (``ordered_map`` over ``pipeline.embed_record`` on ``--workers``
    spawned processes: ``embed_one`` with n = 10, the default output, a per-molecule
    ``--timeout``). Writes one row per molecule (``embed_outcomes.tsv``: outcome, error type,
    seconds, conformers, generator) and ``embed_summary.json``: counts per outcome and source,
    the error types (each checked to be an ``RdConfVAEError`` subclass), the slowest molecules
    against the timeout, CPU time and peak RSS. A watchdog stops the run and names the
    molecules in flight when no result arrives for ``--hang-after`` seconds.

``stream``
    The CLI on a ``--small``-line and a ``--large``-line SMILES file (11 small molecules, one
    unparsable, repeated; cheap settings ``-n 1 --polish-iters 0``; the streaming code path,
    reader -> window of in-flight molecules -> checkpointed writer, is the same as for any input):
    peak RSS of the CLI and its largest worker, each run in its own process tree. Then a
    ``--kills``-times SIGKILL-and-``--resume`` run at random points, whose output must equal the
    uninterrupted run's byte for byte (``stream_summary.json``).

``badfiles``
    Damaged inputs (truncated SDF and gzip, binary garbage, a broken SDF record in the middle,
    CSV without a SMILES column, mixed line endings, non-UTF-8 names, unknown extensions) and an
    unwritable output through the CLI: exit code, the stderr message and the error file
    (``badfiles_summary.json``).

Usage (from the project root; the full ``embed`` part takes about an hour on 2 busy cores)::

    nice -n 10 .venv/bin/python benchmarks/robustness.py embed --workers 2 --timeout 30
    .venv/bin/python benchmarks/robustness.py stream
    .venv/bin/python benchmarks/robustness.py badfiles
    .venv/bin/python benchmarks/robustness.py embed --limit 300 --out /tmp/rob   # a quick try
    nice -n 10 .venv/bin/python benchmarks/robustness.py embed --workers 2 --timeout 30 --resume
        # continues a stopped run (a STOP file, a kill, the end of a sitting) after its last row
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import json
import os
import random
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "smiles"
AWKWARD = ROOT / "benchmarks" / "robustness" / "awkward.smi"
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "robustness"


# ----------------------------------------------------------------------------------- inputs


def load_inputs(limit: int | None = None, sets: tuple[str, ...] = ("awkward", "large")):
    """(source, name, smiles) for the three input sets, in a fixed order.

    The awkward list comes first, then the two large sets shuffled together (fixed seed), so
    a run stopped early (``limit``, or a ``STOP`` file in the results folder) has covered an
    even sample of them.
    """
    train, geom, awkward = [], [], []
    with open(SHARED / "train_pool.smi", encoding="utf-8") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            train.append(("train_pool", row["inchikey"], row["smiles"]))
    with open(SHARED / "geom_drugs_test_smiles.csv", encoding="utf-8") as fh:
        for k, row in enumerate(csv.DictReader(fh)):
            geom.append(("geom_test", f"geom{k + 1}", row["smiles"]))
    with open(AWKWARD, encoding="utf-8") as fh:
        for line in fh:
            parts = line.split()
            if parts and not parts[0].startswith("#"):
                awkward.append(("awkward", parts[1], parts[0]))
    big = train + geom
    random.Random(21).shuffle(big)  # a run stopped early is an even sample of both sets
    if limit:
        big = big[:limit]
    return (awkward if "awkward" in sets else []) + (big if "large" in sets else [])


def _maxrss_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024.0  # Linux: kilobytes


def _cpu_s(who: int) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


# ------------------------------------------------------------------------------------ embed


def _proc_usage(pid: int) -> tuple[float, float]:
    """(CPU seconds, peak RSS in MB) of a live process, from /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
        status = Path(f"/proc/{pid}/status").read_text()
        hwm = next(int(ln.split()[1]) for ln in status.splitlines() if ln.startswith("VmHWM"))
        return cpu, hwm / 1024.0
    except (OSError, StopIteration, ValueError, IndexError):
        return 0.0, 0.0


def _children(pid: int) -> list[int]:
    kids = []
    for st in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(st.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(st.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return kids


def _sitting(meta: dict) -> dict:
    """One earlier sitting's own figures, from its ``embed_run.json`` (totals minus the
    sittings before it)."""
    prior = meta.get("sittings", [])
    cpu = meta.get("cpu_s", {})
    return {
        "done": meta.get("done", 0) - sum(x["done"] for x in prior),
        "wall_s": round(meta.get("wall_s", 0.0) - sum(x["wall_s"] for x in prior), 1),
        "cpu_main_s": round(cpu.get("main", 0.0) - sum(x["cpu_main_s"] for x in prior), 1),
        "cpu_workers_s": round(cpu.get("workers", 0.0) - sum(x["cpu_workers_s"] for x in prior), 1),
        "peak_rss_mb": meta.get("peak_rss_mb", {}),
        "finished": meta.get("finished"),
    }


def run_embed(args: argparse.Namespace) -> int:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    from rdconfvae.batch.stream import InputRecord, ordered_map
    from rdconfvae.batch.unit import EmbedOptions, embed_record

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "STOP").unlink(missing_ok=True)
    inputs = load_inputs(args.limit, tuple(args.sets))
    records = [InputRecord(i, f"{src}/{name}", smi) for i, (src, name, smi) in enumerate(inputs)]
    options = EmbedOptions(n=args.n, timeout=args.timeout, seed=0)
    outcomes = out / "embed_outcomes.tsv"
    earlier: dict = {}
    kept = b""
    done_before = 0
    if args.resume and outcomes.exists():
        earlier = json.loads((out / "embed_run.json").read_text())
        if earlier.get("options", {}).get("n") != args.n or earlier.get("sets") != args.sets:
            raise SystemExit(f"cannot resume {out}: it was run with other -n or --sets")
        data = outcomes.read_bytes()
        kept = data[: data.rfind(b"\n") + 1]  # whole rows only (a kill may cut the last)
        done_before = kept.count(b"\n") - 1  # the header
        names = [ln.split(b"\t")[1].decode() for ln in kept.splitlines()[1:]]
        want = [r.name.split("/", 1)[1] for r in records[:done_before]]
        if names != want:
            raise SystemExit(f"cannot resume {out}: its rows are not this input's first ones")
        records = records[done_before:]
        print(f"resuming after {done_before} molecules", file=sys.stderr)
    print(f"{len(records)} molecules, {options}", file=sys.stderr)
    meta = {
        "command": " ".join(["benchmarks/robustness.py", *sys.argv[1:]]),
        "options": {
            "n": args.n,
            "timeout_s": args.timeout,
            "workers": args.workers,
            "default output": "polish (the package default)",
            "seed": 0,
        },
        "input_molecules": done_before + len(records),
        "sets": args.sets,
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }
    if earlier:  # totals over the sittings: each sitting's own figures are kept in the list
        meta["started"] = earlier.get("started", meta["started"])
        meta["sittings"] = [*earlier.get("sittings", []), _sitting(earlier)]
    before = {
        "done": sum(x["done"] for x in meta.get("sittings", [])),
        "wall_s": sum(x["wall_s"] for x in meta.get("sittings", [])),
        "main": sum(x["cpu_main_s"] for x in meta.get("sittings", [])),
        "workers": sum(x["cpu_workers_s"] for x in meta.get("sittings", [])),
        "rss_main": [x["peak_rss_mb"].get("main", 0) for x in meta.get("sittings", [])],
        "rss_worker": [x["peak_rss_mb"].get("largest_worker", 0) for x in meta.get("sittings", [])],
    }
    progress = {"done": 0, "last": time.monotonic(), "t0": time.monotonic()}
    usage: dict[int, tuple[float, float]] = {}  # worker pid -> (cpu s, peak rss MB)

    def sample() -> None:
        for pid in _children(os.getpid()):
            cpu, rss = _proc_usage(pid)
            old = usage.get(pid, (0.0, 0.0))
            usage[pid] = (max(cpu, old[0]), max(rss, old[1]))
        main_cpu = _cpu_s(resource.RUSAGE_SELF)
        loads = meta.setdefault("load_average_samples", [])
        loads.append(round(os.getloadavg()[0], 2))
        meta.update(
            done=before["done"] + progress["done"],
            wall_s=round(before["wall_s"] + time.monotonic() - progress["t0"], 1),
            cpu_s={
                "main": round(before["main"] + main_cpu, 1),
                "workers": round(before["workers"] + sum(c for c, _ in usage.values()), 1),
            },
            peak_rss_mb={  # the largest of every sitting
                "main": round(max([_maxrss_mb(resource.RUSAGE_SELF), *before["rss_main"]])),
                "largest_worker": round(
                    max([*(r for _, r in usage.values()), *before["rss_worker"]], default=0.0)
                ),
            },
            workers_seen=len(usage),
        )
        write_meta()

    def write_meta() -> None:
        (out / "embed_run.json").write_text(json.dumps(meta, indent=2) + "\n")

    def watchdog() -> None:
        while True:
            time.sleep(15)
            sample()
            if time.monotonic() - progress["last"] > args.hang_after:
                k = progress["done"]
                meta["hang"] = {
                    "after_s": args.hang_after,
                    "in_flight": [r.name for r in records[k : k + 4 * args.workers]],
                }
                write_meta()
                print(f"HANG: {meta['hang']}", file=sys.stderr)
                os._exit(3)

    threading.Thread(target=watchdog, daemon=True).start()
    stopped = False
    with open(outcomes, "w", encoding="utf-8") as fh:
        if kept:
            fh.write(kept.decode("utf-8"))
        else:
            fh.write("source\tname\toutcome\terror_type\tseconds\tconformers\tgenerator\terror\n")
        for res in ordered_map(embed_record, records, args.workers, options):
            progress["done"] += 1
            progress["last"] = time.monotonic()
            src, name = res.name.split("/", 1)
            gen = etype = ""
            if res.ok:
                gen = ",".join(
                    sorted(
                        {
                            c.GetProp("rdconfvae_generator")
                            for c in res.mol.GetConformers()
                            if c.HasProp("rdconfvae_generator")
                        }
                    )
                )
            else:
                etype = res.error.split(":", 1)[0]
            row = [
                src,
                name,
                res.status,
                etype,
                f"{res.seconds:.3f}",
                str(res.n_conformers),
                gen,
                res.error,
            ]
            fh.write("\t".join(row) + "\n")
            fh.flush()
            if progress["done"] % 250 == 0:
                rate = progress["done"] / (time.monotonic() - progress["t0"])
                print(f"{progress['done']}/{len(records)} {rate:.2f} mol/s", file=sys.stderr)
            if (out / "STOP").exists():
                stopped = True
                break
    sample()
    meta["stopped_early"] = stopped
    meta["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    write_meta()
    return summarise(out)


def summarise(out: Path) -> int:
    """embed_summary.json from embed_outcomes.tsv and embed_run.json (also of a stopped run)."""
    from rdconfvae import errors

    meta = json.loads((out / "embed_run.json").read_text())
    with open(out / "embed_outcomes.tsv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    for r in rows:
        r["seconds"] = float(r["seconds"])

    def documented(etype: str) -> bool:
        cls = getattr(errors, etype, None)
        return isinstance(cls, type) and issubclass(cls, errors.RdConfVAEError)

    by_source: dict[str, Counter] = defaultdict(Counter)
    reasons: dict[str, list] = defaultdict(list)
    for r in rows:
        key = f"ok ({r['generator']})" if r["outcome"] == "ok" else f"failed: {r['error_type']}"
        by_source[r["source"]][key] += 1
        by_source["all"][key] += 1
        if r["outcome"] != "ok":
            reasons[r["error_type"]].append(f"{r['source']}/{r['name']}: {r['error']}")
    timeout = meta["options"]["timeout_s"]
    limit = timeout * 1.2 if timeout else None
    slow = sorted(rows, key=lambda r: -r["seconds"])[:12]
    summary = {
        **meta,
        "molecules_answered": len(rows),
        "outcomes": {k: dict(v.most_common()) for k, v in sorted(by_source.items())},
        "undocumented_exceptions": sum(len(v) for t, v in reasons.items() if not documented(t)),
        "error_types": {
            t: {"count": len(v), "RdConfVAEError_subclass": documented(t), "examples": v[:8]}
            for t, v in sorted(reasons.items(), key=lambda kv: -len(kv[1]))
        },
        "hangs": 1 if "hang" in meta else 0,
        "timeout": {
            "limit_s": timeout,
            "max_seconds_per_molecule": max((r["seconds"] for r in rows), default=0.0),
            "over_120_percent_of_limit": []
            if limit is None
            else [
                f"{r['source']}/{r['name']}: {r['seconds']} s" for r in rows if r["seconds"] > limit
            ],
            "timed_out": sum(r["error_type"] == "EmbeddingTimeoutError" for r in rows),
        },
        "slowest": [f"{r['source']}/{r['name']}: {r['seconds']} s ({r['outcome']})" for r in slow],
        "rate_mol_per_s": round(len(rows) / meta["wall_s"], 3) if meta.get("wall_s") else None,
    }
    (out / "embed_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(
        json.dumps(
            {
                k: summary[k]
                for k in ("molecules_answered", "outcomes", "undocumented_exceptions", "timeout")
            },
            indent=1,
        )
    )
    return 0


# ----------------------------------------------------------------------------------- stream


def _cli(*argv: str) -> list[str]:
    return [sys.executable, "-m", "rdconfvae", "embed", *argv]


def _measured(cmd: list[str]) -> dict:
    """Run ``cmd``; peak RSS (VmHWM) of its main process and of its largest child, polled."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    main_mb = child_mb = 0.0
    while proc.poll() is None:
        main_mb = max(main_mb, _proc_usage(proc.pid)[1])
        for kid in _children(proc.pid):
            child_mb = max(child_mb, _proc_usage(kid)[1])
        time.sleep(0.2)
    err = proc.stderr.read().decode(errors="replace").strip().splitlines()
    return {
        "rc": proc.returncode,
        "wall_s": round(time.perf_counter() - t, 1),
        "main_peak_rss_mb": round(main_mb, 1),
        "largest_worker_peak_rss_mb": round(child_mb, 1),
        "summary_line": err[-1] if err else "",
    }


#: ``rdconfvae embed`` with the embedding itself replaced by RDKit 2D coordinates: the same
#: reader, window, writer and checkpoints at a fraction of the cost (one process)
_STUB = (
    "import sys\n"
    "from rdkit import Chem\n"
    "from rdkit.Chem import AllChem\n"
    "import rdconfvae.batch.unit as pipeline\n"
    "from rdconfvae.batch.unit import EmbedResult, to_mol\n"
    "def stub(item, name='', index=0, options=None):\n"
    "    try:\n"
    "        mol = Chem.AddHs(to_mol(item))\n"
    "    except Exception as exc:\n"
    "        return EmbedResult(index, name, 'failed', f'{type(exc).__name__}: {exc}')\n"
    "    AllChem.Compute2DCoords(mol)\n"
    "    mol.SetProp('_Name', name)\n"
    "    return EmbedResult(index, name, 'ok', mol_binary=mol.ToBinary(), n_conformers=1)\n"
    "pipeline.embed_one = stub\n"
    "from rdconfvae.cli import main\n"
    "raise SystemExit(main(sys.argv[1:]))\n"
)


#: small molecules repeated for the streaming runs (cheap per line; the code path is the same)
_STREAM_SMILES = [
    "CCO",
    "CCN",
    "c1ccccc1O",
    "CC(=O)O",
    "CC(=O)Nc1ccc(O)cc1",
    "C1CCOC1",
    "CC(C)O",
    "c1ccncc1",
    "OCCO",
    "CC(N)C(=O)O",
    "not_a_smiles",
]


def _library_lines(count: int) -> list[str]:
    return [f"{_STREAM_SMILES[k % len(_STREAM_SMILES)]} m{k + 1}\n" for k in range(count)]


def run_stream(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cheap = ["-n", "1", "--polish-iters", "0", "--seed", "0", "--progress", "off"]
    summary: dict = {
        "command": " ".join(["benchmarks/robustness.py", *sys.argv[1:]]),
        "settings": " ".join(cheap) + f" --workers {args.workers}",
        "input": f"{len(_STREAM_SMILES)} small molecules (one unparsable) repeated",
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for mode, sizes in (("real", args.real_sizes), ("stub", args.stub_sizes)):
            rows = {}
            for count in sizes:
                src = tmp / f"in{count}.smi"
                src.write_text("".join(_library_lines(count)))
                dest = str(tmp / f"o{count}.sdf")
                if mode == "real":
                    cmd = _cli(str(src), dest, *cheap, "--workers", str(args.workers))
                else:
                    cmd = [sys.executable, "-c", _STUB, "embed", str(src), dest, *cheap]
                rows[str(count)] = _measured(cmd)
                print(f"{mode} {count} lines: {rows[str(count)]}", file=sys.stderr)
            small, large = rows[str(min(sizes))], rows[str(max(sizes))]
            ratio = large["main_peak_rss_mb"] / small["main_peak_rss_mb"]
            summary[f"rss_{mode}"] = {
                "runs": rows,
                "main_ratio_largest_over_smallest": round(ratio, 3),
                "within_10_percent": ratio <= 1.10,
            }
        summary["rss_stub_note"] = (
            "stub: the CLI in one process with embed_one replaced by RDKit 2D coordinates "
            "(reader, in-flight window, SDF writer, checkpoints unchanged)"
        )

        # SIGKILL at random points, then --resume, until complete
        src = tmp / "kill.smi"
        src.write_text("".join(_library_lines(args.kill_lines)))
        ref = tmp / "ref.sdf.gz" if args.gz else tmp / "ref.sdf"
        t = time.perf_counter()
        subprocess.run(
            _cli(str(src), str(ref), *cheap, "--workers", str(args.workers)),
            stderr=subprocess.DEVNULL,
        )
        full_s = time.perf_counter() - t
        part = tmp / ("part.sdf.gz" if args.gz else "part.sdf")
        rng = random.Random(args.seed)
        # kill points: random output sizes, increasing, so each kill falls inside new work
        # (a resumed run first cuts the file back to its checkpoint, never above the last kill)
        size = ref.stat().st_size
        targets = sorted(rng.uniform(0.05, 0.95) * size for _ in range(args.kills))
        kills = []
        last = 0
        for k, target in enumerate(targets):
            target = max(target, last + 1)
            cmd = _cli(str(src), str(part), *cheap, "--workers", str(args.workers))
            if k:
                cmd.append("--resume")
            t = time.perf_counter()
            proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL, start_new_session=True)
            while proc.poll() is None and (not part.exists() or part.stat().st_size < target):
                time.sleep(0.02)
            ended = proc.poll() is not None
            if not ended:
                os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its workers, no clean-up
            proc.wait()
            last = part.stat().st_size
            prog = part.with_name(part.name + ".progress.json")
            done = json.loads(prog.read_text())["done"] if prog.exists() else None
            kills.append(
                {
                    "after_s": round(time.perf_counter() - t, 2),
                    "output_bytes_at_kill": last,
                    "of_bytes": size,
                    "checkpoint_done": done,
                    "finished_before_kill": ended,
                }
            )
        rc = subprocess.run(
            _cli(str(src), str(part), *cheap, "--workers", str(args.workers), "--resume"),
            stderr=subprocess.DEVNULL,
        ).returncode
        a, b = part.read_bytes(), ref.read_bytes()
        if args.gz:
            a, b = gzip.decompress(a), gzip.decompress(b)
        summary["kill_resume"] = {
            "lines": args.kill_lines,
            "uninterrupted_s": round(full_s, 1),
            "note": "gzip outputs are compared decompressed" if args.gz else "",
            "kills": kills,
            "final_resume_rc": rc,
            "identical_bytes": a == b,
            "sha256": hashlib.sha256(a).hexdigest(),
            "gzip_output": args.gz,
        }
    (out / "stream_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=1))
    return 0


# --------------------------------------------------------------------------------- badfiles


def _bad_inputs(tmp: Path) -> dict[str, Path]:
    good_smi = "CCO ethanol\nc1ccccc1O phenol\nCC(=O)Nc1ccc(O)cc1 paracetamol\n"
    from rdkit import Chem

    block = ""
    for smi, name in (("CCO", "ethanol"), ("c1ccccc1O", "phenol"), ("CCN", "ethylamine")):
        m = Chem.MolFromSmiles(smi)
        m.SetProp("_Name", name)
        block += Chem.MolToMolBlock(m) + "$$$$\n"
    files = {}

    def put(name: str, data: bytes) -> None:
        files[name] = tmp / name
        files[name].write_bytes(data)

    recs = block.split("$$$$\n")
    put("truncated.sdf", block.encode()[: len(block) * 2 // 3])
    put(
        "broken_middle.sdf",
        (
            recs[0] + "$$$$\n" + "garbage line\nnot a mol block\n$$$$\n" + recs[2] + "$$$$\n"
        ).encode(),
    )
    gz = gzip.compress(block.encode())
    put("truncated.sdf.gz", gz[: len(gz) * 2 // 3])
    put("garbage.smi", random.Random(1).randbytes(3000))
    put("garbage.sdf", random.Random(2).randbytes(3000))
    put("garbage.sdf.gz", random.Random(3).randbytes(3000))
    put("nosmiles.csv", b"id,structure\nm1,CCO\nm2,CCN\n")
    put("mixed_endings.smi", b"CCO ethanol\r\nc1ccccc1O phenol\rCCN ethylamine\nCCC propane\r\n")
    put("latin1_names.smi", "CCO \xe9thanol\nCCN amine-\xdf\n".encode("latin-1"))
    put("utf8_bom.csv", "\ufeffsmiles,name\nCCO,ethanol\n".encode())
    put("unknown.txt", good_smi.encode())
    put("empty.smi", b"")
    return files


def _untmp(lines: list[str] | None, tmp: Path) -> list[str] | None:
    if lines is None:
        return None
    return [ln.replace(str(tmp) + "/", "").replace(str(tmp), "TMP") for ln in lines]


def run_badfiles(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, path in _bad_inputs(tmp).items():
            res = tmp / f"{name}.out.sdf"
            proc = subprocess.run(
                _cli(str(path), str(res), "-n", "1", "--progress", "off"),
                capture_output=True,
                text=True,
            )
            err_file = Path(str(res) + ".errors.tsv")
            recs = res.read_text(errors="replace").count("$$$$") if res.exists() else None
            results[name] = {
                "rc": proc.returncode,
                "stderr": _untmp(proc.stderr.splitlines(), tmp),
                "conformer_records": recs,
                "errors_tsv": _untmp(err_file.read_text(errors="replace").splitlines(), tmp)
                if err_file.exists()
                else None,
            }
        src = tmp / "ok.smi"
        src.write_text("CCO ethanol\n")
        for label, target in (
            ("output in a missing folder", tmp / "nodir" / "o.sdf"),
            ("output is a folder", tmp),
        ):
            proc = subprocess.run(
                _cli(str(src), str(target), "-n", "1", "--progress", "off"),
                capture_output=True,
                text=True,
            )
            results[label] = {
                "rc": proc.returncode,
                "stderr": _untmp(proc.stderr.splitlines(), tmp),
            }
        for label, ext in (("output .mol2", "o.mol2"), ("output .sdf", "o.sdf")):
            proc = subprocess.run(
                _cli(str(src), str(tmp / ext), "-n", "1", "--progress", "off"),
                capture_output=True,
                text=True,
            )
            results[label] = {
                "rc": proc.returncode,
                "stderr": _untmp(proc.stderr.splitlines(), tmp),
                "side_files": sorted(p.name for p in tmp.glob(ext + ".*")),
            }
    (out / "badfiles_summary.json").write_text(json.dumps(results, indent=2) + "\n")
    for k, v in results.items():
        print(f"{k:28s} rc={v['rc']} {v['stderr'][-1] if v['stderr'] else ''}")
    return 0


def _table(rows: list[list[object]], head: list[str]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
    return out


def run_report(args: argparse.Namespace) -> int:
    """README.md of the results folder from the JSON files the other parts wrote."""
    out = Path(args.out)
    lines = [
        "# Robustness at library scale (issue 21)",
        "",
        "Written by `benchmarks/robustness.py report` from the JSON files beside it; each "
        "part's command is in its JSON (`command`).",
        "",
    ]
    for label, name in (
        ("", "embed_summary.json"),
        (" (awkward list again)", "embed_awkward_summary.json"),
        (" (awkward list, the limit checked inside every stage)", "embed_stages_summary.json"),
    ):
        path = out / name
        if not path.exists():
            continue
        e = json.loads(path.read_text())
        lines += [
            f"## Every molecule answered{label}",
            "",
            f"`{e['command']}`: {e['molecules_answered']} of {e['input_molecules']} "
            f"molecules answered ({'stopped early' if e.get('stopped_early') else 'all'}),"
            f" n = {e['options']['n']}, timeout {e['options']['timeout_s']} s, "
            f"{e['options']['workers']} workers; started {e['started']}.",
            "",
        ]
        sources = [k for k in e["outcomes"] if k != "all"] + ["all"]
        keys = sorted({k for v in e["outcomes"].values() for k in v})
        lines += _table(
            [[k] + [e["outcomes"][s].get(k, 0) for s in sources] for k in keys],
            ["outcome", *sources],
        )
        lines += [
            "",
            f"Exceptions that are not `RdConfVAEError` subclasses: "
            f"**{e['undocumented_exceptions']}**; hangs: **{e['hangs']}**.",
            "",
        ]
        rows = [
            [
                t,
                v["count"],
                "yes" if v["RdConfVAEError_subclass"] else "**no**",
                "<br>".join(x[:160] for x in v["examples"][:4]),
            ]
            for t, v in e["error_types"].items()
        ]
        lines += _table(rows, ["error type", "count", "RdConfVAEError", "examples"])
        t = e["timeout"]
        lines += [
            "",
            f"Timeout {t['limit_s']} s: slowest molecule {t['max_seconds_per_molecule']}"
            f" s; over 120 % of the limit: {len(t['over_120_percent_of_limit'])}; timed out:"
            f" {t['timed_out']}. Wall {e.get('wall_s')} s ({e.get('rate_mol_per_s')} mol/s),"
            f" CPU {e['cpu_s']['main']} s main + {e['cpu_s']['workers']} s workers, peak "
            f"RSS {e['peak_rss_mb']['main']} MB main, {e['peak_rss_mb']['largest_worker']} "
            f"MB largest worker; 1-min load average min/median/max "
            f"{min(e['load_average_samples'])}/"
            f"{sorted(e['load_average_samples'])[len(e['load_average_samples']) // 2]}/"
            f"{max(e['load_average_samples'])} on {os.cpu_count()} cores.",
            "",
        ]
    path = out / "stream_summary.json"
    if path.exists():
        st = json.loads(path.read_text())
        lines += [
            "## Streaming and SIGKILL-resume",
            "",
            f"`{st['command']}`; {st['settings']}; input: {st['input']}.",
            "",
        ]
        rows = []
        for mode in ("real", "stub"):
            for count, r in st[f"rss_{mode}"]["runs"].items():
                rows.append(
                    [
                        mode,
                        count,
                        r["main_peak_rss_mb"],
                        r["largest_worker_peak_rss_mb"],
                        r["wall_s"],
                        r["rc"],
                    ]
                )
        lines += _table(
            rows, ["embedding", "lines", "CLI peak RSS MB", "worker peak RSS MB", "wall s", "exit"]
        )
        lines += ["", st["rss_stub_note"] + ".", ""]
        for mode in ("real", "stub"):
            r = st[f"rss_{mode}"]
            lines.append(
                f"- {mode}: largest/smallest CLI peak RSS = "
                f"{r['main_ratio_largest_over_smallest']} (within 10 %: "
                f"{r['within_10_percent']})"
            )
        kr = st["kill_resume"]
        lines += [
            "",
            f"SIGKILL of the CLI's process group at {len(kr['kills'])} random output "
            f"sizes of a {kr['lines']}-line run, each followed by `--resume`, then a final "
            f"`--resume` (exit {kr['final_resume_rc']}): output identical to the "
            f"uninterrupted run byte for byte: **{kr['identical_bytes']}**.",
            "",
        ]
        lines += _table(
            [
                [
                    k["output_bytes_at_kill"],
                    k["of_bytes"],
                    k["checkpoint_done"],
                    k["finished_before_kill"],
                ]
                for k in kr["kills"]
            ],
            ["bytes at kill", "of", "checkpointed molecules", "run ended first"],
        )
        lines.append("")
    path = out / "badfiles_summary.json"
    if path.exists():
        b = json.loads(path.read_text())
        lines += [
            "## Bad files",
            "",
            "`benchmarks/robustness.py badfiles`: each through `rdconfvae embed ... -n 1`.",
            "",
        ]
        rows = []
        for k, v in b.items():
            last = v["stderr"][-1] if v["stderr"] else ""
            errs = "<br>".join(v.get("errors_tsv") or [])
            rows.append([k, v["rc"], last[:150], errs[:200]])
        lines += _table(rows, ["case", "exit", "last stderr line", "error file"])
        lines.append("")
    notes = out / "findings.md"  # written by hand: what the numbers mean, what is left
    if notes.exists():
        lines += [notes.read_text().rstrip(), ""]
    (out / "README.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="results folder")
    sub = parser.add_subparsers(dest="part", required=True)
    p = sub.add_parser("embed", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("-n", type=int, default=10)
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per molecule")
    p.add_argument(
        "--hang-after",
        type=float,
        default=600.0,
        help="stop and report a hang after this long without a result",
    )
    p.add_argument(
        "--sets",
        nargs="+",
        choices=("awkward", "large"),
        default=["awkward", "large"],
        help="awkward: benchmarks/robustness/awkward.smi; large: train pool + GEOM test",
    )
    p.add_argument(
        "--limit",
        type=int,
        default=None,
        help="the first N molecules of the shuffled large sets",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out after its last whole row (same -n and --sets)",
    )
    p = sub.add_parser("stream", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument(
        "--real-sizes",
        type=int,
        nargs="+",
        default=[200, 1000],
        help="input lines of the real CLI runs",
    )
    p.add_argument(
        "--stub-sizes",
        type=int,
        nargs="+",
        default=[1000, 50000],
        help="input lines of the stub-embedding runs",
    )
    p.add_argument("--kill-lines", type=int, default=1500)
    p.add_argument("--kills", type=int, default=5)
    p.add_argument("--seed", type=int, default=21)
    p.add_argument("--gz", action="store_true", help="kill/resume into a .sdf.gz output")
    sub.add_parser("badfiles")
    sub.add_parser("summarise", help="embed_summary.json from a finished or stopped embed run")
    sub.add_parser("report", help="README.md from the JSON files of the other parts")
    args = parser.parse_args(argv)
    if args.part == "summarise":
        return summarise(Path(args.out))
    if args.part == "report":
        return run_report(args)
    return {"embed": run_embed, "stream": run_stream, "badfiles": run_badfiles}[args.part](args)


if __name__ == "__main__":
    raise SystemExit(main())

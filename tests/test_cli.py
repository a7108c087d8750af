"""Command line: embed a SMILES file to SDF, failures to the error file, exit codes."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from rdkit import Chem

from rdconfvae.batch import stream as batch
from rdconfvae.batch.stream import embed_file
from rdconfvae.batch.unit import EmbedOptions
from rdconfvae.cli import main


def test_embed_smiles_file(tmp_path, capsys):
    src = tmp_path / "in.smi"
    src.write_text("CCO ethanol\nnot_a_smiles broken\nc1ccccc1O phenol\n")
    out = tmp_path / "out.sdf"
    assert main(["embed", str(src), str(out), "-n", "3", "--seed", "1"]) == 1  # one failure
    # the summary counts input molecules and conformer records apart
    assert f"2 of 3 input molecules embedded: 6 conformer records in {out}" in (
        capsys.readouterr().err
    )
    mols = list(Chem.SDMolSupplier(str(out), removeHs=False))
    assert [m.GetProp("_Name") for m in mols] == ["ethanol"] * 3 + ["phenol"] * 3
    assert [m.GetIntProp("conformer_id") for m in mols] == [0, 1, 2] * 2
    assert all(m.GetConformer().Is3D() and m.GetNumAtoms() > 3 for m in mols)
    errors = (tmp_path / "out.sdf.errors.tsv").read_text()
    assert errors.startswith("broken\tInvalidInputError: invalid SMILES")


def test_info_and_version():
    out = subprocess.run(
        [sys.executable, "-m", "rdconfvae", "info"], capture_output=True, text=True, check=True
    )
    info = json.loads(out.stdout)
    assert len(info["sha256"]) == 64 and info["training"]["data_hash"]
    version = subprocess.run(
        [sys.executable, "-m", "rdconfvae", "--version"], capture_output=True, text=True
    )
    assert version.stdout.startswith("rdconfvae ")


def test_unreadable_input_is_a_run_failure(tmp_path):
    assert main(["embed", str(tmp_path / "missing.smi"), str(tmp_path / "o.sdf")]) == 2


# ------------------------------------------------------------------ streaming batch runs

SMILES = [
    ("CCO", "ethanol"),
    ("c1ccccc1O", "phenol"),
    ("not_a_smiles", "broken"),
    ("CC(=O)Nc1ccc(O)cc1", "paracetamol"),
    ("C[C@H](N)C(=O)O", "alanine"),
    ("OC(=O)c1ccccc1OC(C)=O", "aspirin"),
]


def _write_smi(path):
    path.write_text("".join(f"{s} {n}\n" for s, n in SMILES))
    return path


def _records(path):
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as fh:
        return [m for m in Chem.ForwardSDMolSupplier(fh, removeHs=False)]


def test_workers_give_the_serial_output_in_input_order(tmp_path):
    src = _write_smi(tmp_path / "in.smi")
    opts = EmbedOptions(n=3, seed=5)
    serial = embed_file(src, tmp_path / "serial.sdf", opts, workers=1, progress=False)
    parallel = embed_file(src, tmp_path / "par.sdf", opts, workers=2, progress=False)
    assert (serial.ok, serial.failed) == (parallel.ok, parallel.failed) == (5, 1)
    assert (tmp_path / "serial.sdf").read_bytes() == (tmp_path / "par.sdf").read_bytes()
    names = [m.GetProp("_Name") for m in _records(tmp_path / "par.sdf")]
    assert names == [n for _, n in SMILES if n != "broken" for _ in range(3)]


def test_interrupted_run_resumes_without_loss_or_duplicates(tmp_path, monkeypatch):
    src = _write_smi(tmp_path / "in.smi")
    opts = EmbedOptions(n=2, seed=3, mmff=True)
    full = tmp_path / "full.sdf.gz"
    embed_file(src, full, opts, progress=False)

    part = tmp_path / "part.sdf.gz"
    real_work = batch.embed_record

    def dying(record, options):
        if record.index == 4:
            raise KeyboardInterrupt
        return real_work(record, options)

    monkeypatch.setattr(batch, "_CHECKPOINT_EVERY", 2)
    monkeypatch.setattr(batch, "embed_record", dying)
    with pytest.raises(KeyboardInterrupt):
        embed_file(src, part, opts, progress=False)
    state = json.loads((tmp_path / "part.sdf.gz.progress.json").read_text())
    assert state["done"] == 4 and not state["complete"]
    # a hard kill leaves bytes after the last checkpoint: resume must cut them off
    with open(part, "ab") as fh:
        fh.write(b"\x1f\x8b half a gzip member")
    with open(tmp_path / "part.sdf.gz.errors.tsv", "a") as fh:
        fh.write("junk\tafter the checkpoint\n")
    monkeypatch.setattr(batch, "embed_record", real_work)
    summary = embed_file(src, part, opts, resume=True, progress=False)
    assert summary.resumed_from == 4 and summary.done == len(SMILES)
    assert summary.conformers == 2 * 5  # both sittings' records, once each
    # a multi-member gzip: same molecules, same coordinates, same energies as one run
    got, want = _records(part), _records(full)
    assert [m.GetProp("_Name") for m in got] == [m.GetProp("_Name") for m in want]
    for a, b in zip(got, want, strict=True):
        assert np.allclose(a.GetConformer().GetPositions(), b.GetConformer().GetPositions())
        assert a.GetDoubleProp("MMFF_ENERGY") == pytest.approx(b.GetDoubleProp("MMFF_ENERGY"))
    errors = (tmp_path / "part.sdf.gz.errors.tsv").read_text().splitlines()
    assert errors == ["broken\tInvalidInputError: invalid SMILES 'not_a_smiles' (in.smi line 3)"]


def test_a_signal_during_a_write_waits_for_the_record_to_be_written(tmp_path, monkeypatch):
    """Ctrl-C (or SIGTERM) landing in the middle of writing a record is held until the
    record is whole, so the checkpoint keeps it instead of falling back to an older one."""
    import signal

    src = _write_smi(tmp_path / "in.smi")
    opts = EmbedOptions(n=1, seed=3, polish_iters=0)
    out = tmp_path / "o.sdf"
    real_write = batch.ResumableOutput.write_record
    calls = []

    def interrupted_write(self, text):
        calls.append(1)
        half = len(text) // 2
        real_write(self, text[:half])
        if len(calls) == 2:
            signal.raise_signal(signal.SIGINT)  # Python's handler: KeyboardInterrupt
        real_write(self, text[half:])

    monkeypatch.setattr(batch.ResumableOutput, "write_record", interrupted_write)
    # Python's own Ctrl-C handler, also where this runs with SIGINT ignored (a shell's
    # background job): the held signal goes to whatever handler was there, ignored included
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            embed_file(src, out, opts, progress=False)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, before)
    state = json.loads((tmp_path / "o.sdf.progress.json").read_text())
    assert state["done"] == 2 and state["out_offset"] == out.stat().st_size
    assert [m.GetProp("_Name") for m in _records(out)] == [n for _, n in SMILES[:2]]


def test_resume_refuses_other_options(tmp_path, monkeypatch, capsys):
    src = _write_smi(tmp_path / "in.smi")
    out = tmp_path / "o.sdf"
    real_work = batch.embed_record

    def dying(record, options):
        if record.index == 2:
            raise KeyboardInterrupt
        return real_work(record, options)

    monkeypatch.setattr(batch, "embed_record", dying)
    assert main(["embed", str(src), str(out), "-n", "2", "--progress", "off"]) == 130
    monkeypatch.setattr(batch, "embed_record", real_work)
    code = main(["embed", str(src), str(out), "-n", "3", "--resume", "--progress", "off"])
    assert code == 2
    assert "cannot resume: options differs" in capsys.readouterr().err
    # a finished run has no checkpoint left: --resume refuses to overwrite its output
    assert main(["embed", str(src), str(out), "-n", "2", "--resume", "--progress", "off"]) == 1
    assert not Path(str(out) + ".progress.json").exists()
    code = main(["embed", str(src), str(out), "-n", "2", "--resume", "--progress", "off"])
    assert code == 2
    assert "exists but has no checkpoint" in capsys.readouterr().err


def test_csv_and_sdf_inputs(tmp_path):
    csv_path = tmp_path / "in.csv"
    csv_path.write_text("id,SMILES\nm1,CCO\nm2,\nm3,c1ccncc1\n")
    out = tmp_path / "c.sdf"
    summary = embed_file(csv_path, out, EmbedOptions(n=2), progress=False)
    assert (summary.ok, summary.failed) == (2, 1)
    assert "m2\tInvalidInputError: empty SMILES" in (tmp_path / "c.sdf.errors.tsv").read_text()
    # the SDF we wrote is a valid input: each record (a conformer) embedded again
    again = embed_file(out, tmp_path / "d.sdf", EmbedOptions(n=1), progress=False)
    assert again.ok == 4
    recs = _records(tmp_path / "d.sdf")
    assert [m.GetProp("_Name") for m in recs] == ["m1", "m1", "m3", "m3"]
    assert all(m.GetNumAtoms() == Chem.AddHs(m).GetNumAtoms() for m in recs)  # H kept, not doubled


def _children(pid: int) -> list[int]:
    kids = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(
                line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line
            )
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(pid):
            kids.append(int(status.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its entry waits to be reaped


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_exit_when_the_cli_is_killed(tmp_path):
    src = tmp_path / "many.smi"
    src.write_text("".join(f"{s} m{i}\n" for i in range(100) for s, _ in SMILES[:1]))
    cmd = [sys.executable, "-m", "rdconfvae", "embed", str(src), str(tmp_path / "o.sdf")]
    proc = subprocess.Popen([*cmd, "-n", "20", "--workers", "2", "--progress", "off"])
    try:
        deadline = time.monotonic() + 90
        while len(_children(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        kids = _children(proc.pid)
        assert len(kids) >= 2, "the CLI did not start its worker processes"
        time.sleep(2.0)  # let the workers get busy
    finally:
        proc.kill()  # SIGKILL: no chance to shut the pool down
        proc.wait()
    deadline = time.monotonic() + 30
    while any(_alive(k) for k in kids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(k) for k in kids), "worker processes outlived the killed CLI"


def test_polish_iters_option(tmp_path):
    """--polish-iters 0 writes the model's raw conformers (as embed with polishIters=0),
    the default writes polished ones; a negative count is refused before any work."""
    import rdconfvae

    src = tmp_path / "in.smi"
    src.write_text("CC(=O)Nc1ccc(O)cc1 paracetamol\n")
    outs = {}
    for flag in ("default", "0"):
        out = tmp_path / f"{flag}.sdf"
        extra = [] if flag == "default" else ["--polish-iters", flag]
        assert main(["embed", str(src), str(out), "-n", "2", "--progress", "off", *extra]) == 0
        mols = Chem.SDMolSupplier(str(out), removeHs=False)
        outs[flag] = [m.GetConformer().GetPositions() for m in mols]
    mol = Chem.AddHs(Chem.MolFromSmiles("CC(=O)Nc1ccc(O)cc1"))
    rdconfvae.embed(mol, n=2, seed=0, params=rdconfvae.EmbedParameters(polishIters=0))
    raw = [c.GetPositions() for c in mol.GetConformers()]
    assert all(np.allclose(a, b, atol=1e-4) for a, b in zip(outs["0"], raw, strict=True))
    assert not np.allclose(outs["default"][0], outs["0"][0], atol=1e-2)
    code = main(["embed", str(src), str(tmp_path / "x.sdf"), "--polish-iters", "-1"])
    assert code == 2
    assert not (tmp_path / "x.sdf").exists()


# ------------------------------------------------------------- what the user sees (issue 21)

CHEAP = ["-n", "1", "--polish-iters", "0", "--progress", "off"]


def test_clean_run_leaves_only_its_output(tmp_path, capsys):
    src = tmp_path / "in.smi"
    src.write_text("CCO ethanol\nc1ccccc1O phenol\n")
    out = tmp_path / "out.sdf"
    assert main(["embed", str(src), str(out), *CHEAP]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.smi", "out.sdf"]
    err = capsys.readouterr().err
    assert "0 failed;" in err and "errors.tsv" not in err


def test_damaged_and_mislabelled_files(tmp_path, capsys):
    """Good records of a damaged file are embedded and the damage is listed (exit 1); a file
    that is not what its name says stops the run with one message naming it (exit 2)."""
    recs = ""
    for k, smi in enumerate(("CCO", "CCN", "CCC", "CCCl", "OCCO", "CC=O") * 2):
        mol = Chem.MolFromSmiles(smi)
        mol.SetProp("_Name", f"m{k}")
        recs += Chem.MolToMolBlock(mol) + "$$$$\n"
    data = gzip.compress(recs.encode())
    cut = tmp_path / "cut.sdf.gz"
    cut.write_bytes(data[: len(data) * 3 // 4])
    out = tmp_path / "cut_out.sdf"
    assert main(["embed", str(cut), str(out), *CHEAP]) == 1
    names = [m.GetProp("_Name") for m in _records(out)]
    assert len(names) >= 3 and names == [f"m{k}" for k in range(len(names))]
    errors = Path(str(out) + ".errors.tsv").read_text().splitlines()
    assert len(errors) == 1 and "cut.sdf.gz: the file ends early or is damaged" in errors[0]
    capsys.readouterr()

    garbage = tmp_path / "garbage.smi"
    garbage.write_bytes(b"CCO ethanol\n\x00\x01\x02binary\n")
    assert main(["embed", str(garbage), str(tmp_path / "g.sdf"), *CHEAP]) == 2
    assert "garbage.smi line 2: binary data" in capsys.readouterr().err

    txt = tmp_path / "in.txt"
    txt.write_text("CCO ethanol\n")
    assert main(["embed", str(txt), str(tmp_path / "t.sdf"), *CHEAP]) == 2
    assert "unknown input extension .txt" in capsys.readouterr().err
    assert not (tmp_path / "t.sdf").exists()
    assert main(["embed", str(txt), str(tmp_path / "t.sdf"), "--format", "smi", *CHEAP]) == 0

    assert main(["embed", str(txt), str(tmp_path / "o.mol2"), "--format", "smi", *CHEAP]) == 2
    assert "name it .sdf or .sdf.gz" in capsys.readouterr().err
    assert not (tmp_path / "o.mol2").exists()
    missing = tmp_path / "no" / "o.sdf"
    assert main(["embed", str(txt), str(missing), "--format", "smi", *CHEAP]) == 2
    assert f"the folder {missing.parent} does not exist" in capsys.readouterr().err


def test_write_failure_stops_with_exit_2_and_resumes(tmp_path, monkeypatch, capsys):
    """A full disk (simulated: the 4th write raises ENOSPC) ends the run with exit 2 and a
    checkpoint; --resume then gives the uninterrupted run's bytes."""
    import errno

    src = _write_smi(tmp_path / "in.smi")
    full = tmp_path / "full.sdf"
    assert main(["embed", str(src), str(full), *CHEAP]) == 1
    part = tmp_path / "part.sdf"
    real = batch.ResumableOutput.write_record
    calls = []

    def disk_full(self, text):
        calls.append(1)
        if len(calls) == 4:
            self._out.write(text.encode()[:10])  # a partly written record
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, text)

    monkeypatch.setattr(batch, "_CHECKPOINT_EVERY", 2)
    monkeypatch.setattr(batch.ResumableOutput, "write_record", disk_full)
    capsys.readouterr()
    assert main(["embed", str(src), str(part), *CHEAP]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "--resume" in err
    assert json.loads(Path(str(part) + ".progress.json").read_text())["done"] >= 2
    monkeypatch.setattr(batch.ResumableOutput, "write_record", real)
    assert main(["embed", str(src), str(part), "--resume", *CHEAP]) == 1
    assert part.read_bytes() == full.read_bytes()
    assert (
        Path(str(part) + ".errors.tsv").read_bytes() == Path(str(full) + ".errors.tsv").read_bytes()
    )


def test_rdkit_log_goes_with_its_molecule(tmp_path, capfd):
    """RDKit's parse errors do not interleave with our stderr lines: its first message joins
    the molecule's reason in the error file; -v shows them all, named by molecule."""
    src = tmp_path / "in.smi"
    src.write_text("c1cccc1 badring\nCCO ethanol\n")
    out = tmp_path / "o.sdf"
    assert main(["embed", str(src), str(out), *CHEAP]) == 1
    err = capfd.readouterr().err
    assert "kekulize" not in err and "(-v shows them)" in err
    reason = Path(str(out) + ".errors.tsv").read_text()
    assert reason.startswith("badring\tInvalidInputError: invalid SMILES 'c1cccc1' (in.smi line 1")
    assert "RDKit: Can't kekulize mol" in reason
    cmd = [sys.executable, "-m", "rdconfvae", "embed", str(src), str(tmp_path / "v.sdf")]
    err = subprocess.run([*cmd, "-v", *CHEAP], capture_output=True, text=True).stderr
    assert "badring: RDKit: Can't kekulize mol" in err
    assert "[" not in err.split("badring: RDKit:")[1].split("\n")[0]  # no RDKit timestamp


def test_help_shows_defaults_inputs_and_exit_codes():
    def helptext(*argv):
        res = subprocess.run(
            [sys.executable, "-m", "rdconfvae", *argv, "--help"], capture_output=True, text=True
        )
        assert res.returncode == 0, res.stderr
        return " ".join(res.stdout.split())

    embed = helptext("embed")
    for text in (
        "conformers per molecule (default: 10)",
        "(default: 0)",  # --seed, unlike the API's -1
        "(default: etkdg)",
        ".csv a 'smiles' column",
        "exit codes: 0 every molecule embedded 1",
        "one molecule's samples and polish split across this many helper processes",
    ):
        assert text in embed, text
    assert "threads per molecule" not in embed
    for command in ("bench", "data", "train"):
        assert helptext(command).startswith(f"usage: rdconfvae {command}")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process groups, signals")
def test_sigterm_and_sigkill_then_resume_give_the_same_bytes(tmp_path):
    """SIGTERM (a batch system's time limit) checkpoints and exits 143; SIGKILL of the CLI
    and its workers leaves only the last checkpoint; --resume after both gives the
    uninterrupted run's bytes."""
    import os
    import signal

    src = tmp_path / "in.smi"
    src.write_text("".join(f"{s} m{i}\n" for i in range(20) for s in ("CCO", "CCN")))
    run = [sys.executable, "-m", "rdconfvae", "embed", str(src)]
    full, part = tmp_path / "full.sdf", tmp_path / "part.sdf"
    subprocess.run([*run, str(full), *CHEAP], check=True, capture_output=True)

    def start_and_wait(extra, size):
        proc = subprocess.Popen(
            [*run, str(part), *CHEAP, *extra], start_new_session=True, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 120
        while (not part.exists() or part.stat().st_size < size) and time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        return proc

    proc = start_and_wait([], 1500)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 143
    assert b"terminated (SIGTERM); continue with --resume" in proc.stderr.read()
    done = json.loads(Path(str(part) + ".progress.json").read_text())["done"]
    assert done > 0
    proc = start_and_wait(["--resume"], part.stat().st_size + 1500)
    os.killpg(proc.pid, signal.SIGKILL)  # the CLI and any worker: no clean-up at all
    proc.wait()
    subprocess.run([*run, str(part), "--resume", *CHEAP], check=True, capture_output=True)
    assert part.read_bytes() == full.read_bytes()


def test_a_worker_that_dies_costs_only_its_molecule():
    """A dead worker used to end the whole run with BrokenProcessPool; now the molecule it
    was embedding fails (when it kills a fresh pool too) and the rest come out in order."""
    import os
    from concurrent.futures.process import BrokenProcessPool

    from _crashers import die_always, die_on_three

    def crashed(item):
        return ("died", item)

    run = dict(initializer=os.getpid, on_crash=crashed)
    got = list(batch.ordered_map(die_on_three, range(8), 2, **run))
    assert got == [0, 10, 20, ("died", 3), 40, 50, 60, 70]
    with pytest.raises(BrokenProcessPool):  # workers that cannot work at all
        list(batch.ordered_map(die_always, range(6), 2, **run))
    with pytest.raises(BrokenProcessPool):  # without on_crash: as before
        list(batch.ordered_map(die_on_three, range(8), 2, initializer=os.getpid))

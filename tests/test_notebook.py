"""examples/quickstart.ipynb runs top to bottom (so it cannot rot) and is stored without outputs."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NOTEBOOK = EXAMPLES / "quickstart.ipynb"

nbformat = pytest.importorskip("nbformat")


def _outputs_text(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        parts.append(out.get("text", ""))
        parts.extend(str(v) for v in out.get("data", {}).values())
    return "\n".join(parts)


def test_stored_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code)


def test_runs_top_to_bottom(tmp_path, monkeypatch):
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("matplotlib")
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    # A kernel spec for *this* interpreter, whatever "python3" resolves to elsewhere.
    spec_dir = tmp_path / "kernels" / "rdconfvae-test"
    spec_dir.mkdir(parents=True)
    argv = [
        sys.executable,
        "-Xfrozen_modules=off",
        "-m",
        "ipykernel_launcher",
        "-f",
        "{connection_file}",
    ]
    (spec_dir / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "rdconfvae test", "language": "python"})
    )
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    specs = KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")])
    manager = KernelManager(kernel_name="rdconfvae-test", kernel_spec_manager=specs)

    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        nb, km=manager, timeout=300, resources={"metadata": {"path": str(tmp_path)}}
    ).execute()  # raises CellExecutionError on the first failing cell

    code = [c for c in nb.cells if c.cell_type == "code"]
    texts = [_outputs_text(c) for c in code]
    embedded = texts[1]
    for name in ("ibuprofen", "propranolol", "imatinib"):
        # 10 asked, 10 returned: a conformer whose stereo MMFF changed is resampled
        found = re.search(rf"{name}\s+(\d+) conformers", embedded)
        assert found and int(found.group(1)) == 10, embedded
    assert texts[2].count("10 conformers") == 3  # ETKDGv3
    assert "min_rmsd" in texts[4]  # the summary table
    assert any("image/png" in out.get("data", {}) for out in code[5].outputs)  # the plot
    assert "MMFF_ENERGY" in texts[6]

"""The user-facing documents: CI runs the README's test command, and every link resolves
inside the repository (nothing points at files a user of a clone does not have)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    ROOT / "benchmarks" / "README.md",
    ROOT / "benchmarks" / "HISTORY.md",
    ROOT / "weights" / "MODEL_CARD.md",
    ROOT / "tests" / "data" / "README.md",
]
LINK = re.compile(r"\]\(([^)\s]+)\)")

pytestmark = pytest.mark.skipif(not (ROOT / "README.md").exists(), reason="not a source checkout")


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()[-1]
    assert ci.startswith("python3 -m venv .venv && ") and ".venv/bin/mypy rdconfvae" in ci
    assert ci in readme.splitlines()


def test_readme_is_short():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 260


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_resolve_inside_the_repository(doc):
    text = doc.read_text(encoding="utf-8")
    assert "../shared" not in text, f"{doc.name} points at the project's private shared data"
    for target in LINK.findall(text):
        if target.startswith(("http://", "https://", "mailto:", "#")):
            continue
        path = (doc.parent / target.split("#")[0]).resolve()
        assert path.is_relative_to(ROOT), (doc.name, target)
        assert path.exists(), (doc.name, target)

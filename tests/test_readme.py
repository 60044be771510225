"""The README and docs stay true: the quickstart runs, links resolve, no development diary."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))

PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
# Wording of a work log, not of a product page: sessions, what changed, comparisons with the past, dates.
DIARY = re.compile(r"\bsessions? \d|\bthis session|\bwhat changed in\b|\bbefore\s*/\s*after\b"
                   r"|\btried and dropped in\b|\b20\d\d-\d\d-\d\d\b", re.I)


def quickstart_blocks() -> list[str]:
    return PYTHON_BLOCK.findall(README.read_text(encoding="utf-8"))


def test_readme_has_a_python_quickstart():
    blocks = quickstart_blocks()
    assert blocks, "README.md has no ```python block"
    assert any("import bar_core" in b for b in blocks)


def test_quickstart_runs(tmp_path):
    """Each ```python block of the README, as a script in an empty folder: it trains a short BAR run
    on the shipped data and teacher, materialises the pruned network and saves / reloads it."""
    runs = tmp_path / "runs"
    env = {**os.environ, "BAR_RUNS_DIR": str(runs), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTHONPATH", None)  # the installed package, as a reader has it
    outputs = []
    for i, code in enumerate(quickstart_blocks()):
        work = tmp_path / f"block{i}"
        work.mkdir()
        script = work / "quickstart.py"
        script.write_text(code, encoding="utf-8")
        r = subprocess.run([sys.executable, str(script)], cwd=work, env=env, capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, f"README block {i} failed:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
        outputs.append((work, r.stdout))
    text = "\n".join(out for _, out in outputs)
    m = re.search(r"V/V0 = ([0-9.]+) \(budget ([0-9.]+)\)", text)
    assert m, f"the quickstart prints no 'V/V0 = ... (budget ...)' line:\n{text}"
    ratio, budget = float(m.group(1)), float(m.group(2))
    assert 0.0 < ratio <= budget + 5e-4, f"V/V0 {ratio} not within the budget {budget}"
    m = re.search(r"logits \((\d+), (\d+)\).*?max \|pruned - gated\| = ([0-9.eE+-]+)", text)
    assert m, f"the quickstart prints no logits shape and difference:\n{text}"
    assert (int(m.group(1)), int(m.group(2))) == (8, 10), "8 images, 10 Fashion-MNIST classes"
    assert float(m.group(3)) < 1e-4, "the pruned network computes what the gated one does in eval mode"
    m = re.search(r"reloaded: (\d+) parameters, same logits: (True|False)", text)
    assert m and m.group(2) == "True", f"the saved pruned network did not reload to the same logits:\n{text}"
    assert 0 < int(m.group(1)), text
    saved = [p for work, _ in outputs for p in work.rglob("architecture.json")]
    assert saved, "save_pruned wrote no architecture.json in the working folder"
    assert not (ROOT / "pruned-resnet8").exists(), "the quickstart wrote into the repository"


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_development_diary(path):
    text = path.read_text(encoding="utf-8")
    hits = [m.group(0) for m in DIARY.finditer(text)]
    assert not hits, f"{path.name} reads like a work log: {hits[:5]}"


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(path):
    text = path.read_text(encoding="utf-8")
    # links inside code blocks are code, not links
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    missing = []
    for target in LINK.findall(prose):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
            continue  # http(s), mailto, an anchor in the same page
        file = (path.parent / target.split("#", 1)[0]).resolve()
        if not file.exists() or ROOT not in file.parents:
            missing.append(target)
    assert not missing, f"{path.name} links to files that are not in the repository: {sorted(set(missing))}"


def test_readme_links_the_docs_and_the_licences():
    text = README.read_text(encoding="utf-8")
    links = set(LINK.findall(text))
    for doc in ("docs/method.md", "docs/performance.md", "docs/settings.md", "LICENSE",
                "bar_core/assets/FASHION-MNIST-LICENSE.txt", "docs/screenshot.png"):
        assert doc in links, f"README.md does not link {doc}"
    assert "@inproceedings{" in text and "9108" in text, "README.md has no BibTeX entry for the paper"

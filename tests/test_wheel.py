"""The built wheel, installed non-editable in a fresh venv, works from a folder outside the repo
(issue 11.6): templates and packaged data ship inside the package. No downloads: the venv sees
the project venv's site-packages for the dependencies through a .pth line (which does not run
the editable install's own .pth), and selfaug itself only from the wheel."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

RECIPE = """\
name: wheel
model: {ref: packaged:smollm2-135m-instruct}
task:
  name: gsm8k
  source: {kind: packaged, name: gsm8k}
  answer_type: number
  split: {train: 8, heldout: 2}
augment: {method: sa_sft}
eval: {retention: [], in_domain: []}
"""


def _run(args, cwd, env, timeout=300):
    out = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{args}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout


@pytest.mark.slow
def test_wheel_installed_in_a_fresh_venv_validates_and_compiles(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "selfaug_compiler", src / "selfaug_compiler",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["OMP_NUM_THREADS"] = "1"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"),
          str(src)], tmp_path, env)
    wheel = next((tmp_path / "dist").glob("selfaug_compiler-*.whl"))

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, env)
    python = venv / "bin" / "python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     tmp_path, env).strip())
    (site / "_project_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)], tmp_path, env)
    where = _run([str(python), "-c", "import selfaug_compiler, pathlib; print(pathlib.Path(selfaug_compiler.__file__))"],
                 tmp_path, env).strip()
    assert Path(where).is_relative_to(site), where  # the wheel, not the checkout
    assert (site / "selfaug_compiler" / "templates" / "launch" / "run.sh.j2").is_file()
    assert (site / "selfaug_compiler" / "augment" / "data" / "topics.txt").is_file()

    work = tmp_path / "work"
    work.mkdir()
    (work / "r.yaml").write_text(RECIPE)
    _run([str(python), "-m", "selfaug_compiler", "validate", "r.yaml"], work, env)
    _run([str(python), "-m", "selfaug_compiler", "compile", "r.yaml", "-o", "out"], work, env)
    assert (work / "out" / "plan.json").is_file() and (work / "out" / "run.sh").is_file()
    assert "selfaug" in (work / "out" / "run.sh").read_text()
    store = work / "store.duckdb"
    _run([str(python), "-m", "selfaug_compiler", "data", "import", "packaged:gsm8k", "--dataset", "g",
          "--store", str(store)],
         work, env)

    # a tiny run: ingest, train and a held-out evaluation on a tiny model built here
    from tests.tiny_models import build_tiny_model

    build_tiny_model(work / "tiny")
    (work / "t.jsonl").write_text("".join(f'{{"q": "What is {i} + {i}?", "a": "{2 * i}"}}\n' for i in range(10)))
    (work / "tiny.yaml").write_text(
        "name: tiny\nmodel: {ref: ./tiny, dtype: float32}\n"
        "task: {name: t, source: {kind: file, path: t.jsonl}, fields: {prompt: q, response: a}, answer_type: number,"
        " split: {train: 8, heldout: 2}}\naugment: {method: none}\n"
        "train: {max_length: 64, epochs: 1, batch_size: 4}\neval: {retention: [], max_new_tokens: 8}\n"
        "store: {path: tiny.duckdb}\n")
    _run([str(python), "-m", "selfaug_compiler", "validate", "tiny.yaml"], work, env)
    _run([str(python), "-m", "selfaug_compiler", "run", "tiny.yaml"], work, env, timeout=600)

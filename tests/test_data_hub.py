"""Hub dataset ids (issue 11.2): a dataset in a temporary HF datasets cache loads by id offline,
its cached commit is in the ingest fingerprint, and validate refuses an id neither the cache nor
the Hub has (exit 2, naming the fix). No network: the cache is built here from a local file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from selfaug_compiler.cli import main

COMMIT = "c0ffee" * 6 + "abcd"  # the cache folder's hash: the hub commit of the build
ROWS = [{"question": f"What is {i} + {i}?", "answer": f"{2 * i}"} for i in range(12)]


def build_cache(cache: Path, tmp: Path) -> None:
    """Lay out ``acme/adds`` as ``datasets`` caches a hub dataset: <org>___<name>/<config>/<version>/<hash>."""
    import datasets

    (tmp / "adds.jsonl").write_text("\n".join(json.dumps(r) for r in ROWS) + "\n")
    datasets.load_dataset("json", data_files=str(tmp / "adds.jsonl"), cache_dir=str(tmp / "build"))
    built = next(p for p in (tmp / "build" / "json").glob("*/*/*") if p.is_dir())
    target = cache / "acme___adds" / "default" / "0.0.0" / COMMIT
    shutil.copytree(built, target)
    for f in target.glob("json-*.arrow"):
        f.rename(target / f.name.replace("json-", "adds-", 1))


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hf_datasets"
    build_cache(cache, tmp_path)
    for name, value in {"HF_DATASETS_CACHE": str(cache), "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}.items():
        monkeypatch.setenv(name, value)
    return cache


def recipe(folder: Path, path: str) -> Path:
    text = (f"name: hub\nmodel: {{ref: packaged:smollm2-135m-instruct}}\n"
            f"task:\n  name: adds\n  source: {{kind: hf, path: {path}}}\n"
            f"  fields: {{prompt: question, response: answer}}\n  split: {{heldout: 2}}\n"
            f"eval: {{retention: [], in_domain: []}}\n")
    (folder / "r.yaml").write_text(text)
    return folder / "r.yaml"


def test_cached_hub_id_validates_and_its_commit_is_in_the_fingerprint(hub_cache, tmp_path, capsys):
    from selfaug_compiler.compile.fingerprints import source_fingerprint
    from selfaug_compiler.recipe.schema import HFSource

    assert main(["validate", str(recipe(tmp_path, "acme/adds"))]) == 0, capsys.readouterr()
    assert source_fingerprint(HFSource(path="acme/adds"), tmp_path) == f"hf:acme/adds:None:train@{COMMIT}"
    pinned = source_fingerprint(HFSource(path="acme/adds", revision="v2"), tmp_path)
    assert pinned.endswith("@v2")


def test_uncached_hub_id_offline_is_refused_naming_the_fix(hub_cache, tmp_path, capsys):
    assert main(["validate", str(recipe(tmp_path, "acme/not-cached"))]) == 2
    err = capsys.readouterr().err
    assert "hub dataset `acme/not-cached` cannot be loaded" in err and "offline mode is on" in err
    assert "save_to_disk" in err and "Traceback" not in err


def test_cached_hub_id_loads_offline_through_load_dataset(hub_cache, tmp_path):
    # a fresh process: datasets reads HF_DATASETS_CACHE / offline flags when it is imported
    code = ("from selfaug_compiler.data.sources import SourceSpec, load_rows\n"
            "t = load_rows(SourceSpec('hf:acme/adds', split='train'), {'prompt': 'question', 'response': 'answer'})\n"
            "print(t.num_rows, t['prompt'][3].as_py(), '|', t['response'][3].as_py())\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
                         cwd=Path(__file__).parents[1])
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "12 What is 3 + 3? | 6"

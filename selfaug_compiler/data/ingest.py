"""The ``ingest`` step: task data -> gold rows -> a fixed, seeded train/held-out split.

params["task"] is the TaskSpec content view (recipe/schema.py): ``source``, ``fields``,
``split``, ``answer_type``, ``name``, ``format`` (data/shapes.py; absent: auto). Conversation rows
(``messages``) take their gold from the last assistant turn and their key from the conversation. Both versions are committed with ``step_id=ctx.step.id``;
a step whose versions already exist returns them without reading the source again.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pyarrow as pa

from selfaug_compiler.data.shapes import target_text
from selfaug_compiler.data.sources import SourceSpec, load_rows
from selfaug_compiler.errors import SelfaugError
from selfaug_compiler.plan import sha256_hex
from selfaug_compiler.runtime import StepContext, StepResult

_GSM_FINAL = re.compile(r"####\s*(-?[\d,]*\.?\d+)")
_NUMBER = re.compile(r"-?\d[\d,]*\.?\d*")


def final_number(text: str | None) -> str | None:
    """The gold final number of a worked answer: after '####' (GSM8K), else the last number."""
    if not text:
        return None
    m = _GSM_FINAL.search(text)
    found = m.group(1) if m else (_NUMBER.findall(text) or [None])[-1]
    if found is None:
        return None
    found = found.replace(",", "").rstrip(".")
    return found[:-2] if found.endswith(".0") else found


def _source_spec(ctx: StepContext, source: dict[str, Any], fmt: str = "auto") -> SourceSpec:
    kind = source.get("kind")
    if kind == "packaged":
        return SourceSpec(f"packaged:{source['name']}", format=fmt, format_option="task.format")
    if kind == "file":
        return SourceSpec(str(ctx.resolve_path(source["path"])), encoding=source.get("encoding", "utf-8"),
                          encoding_option="task.source.encoding", format=fmt, format_option="task.format")
    if kind == "hf":
        local = ctx.resolve_path(source["path"])
        if local.is_dir():
            return SourceSpec(str(local), split=source.get("split"), format=fmt, format_option="task.format")
        return SourceSpec(f"hf:{source['path']}", split=source.get("split"), hub_config=source.get("name"),
                          revision=source.get("revision"), format=fmt, format_option="task.format")
    raise SelfaugError(f"unknown task source kind {kind!r}", field="task.source.kind", expected="file, packaged, hf")


def _with_gold(rows: pa.Table, answer_type: str) -> pa.Table:
    """Put the gold answer into meta (for numeric tasks: the final number of the response)."""
    metas = []
    targets = [target_text({"response": r, "messages": m})
               for r, m in zip(rows["response"].to_pylist(), rows["messages"].to_pylist())]
    for meta, response in zip(rows["meta"].to_pylist(), targets):
        data = json.loads(meta) if meta else {}
        data["gold"] = final_number(response) if answer_type == "number" else response
        metas.append(json.dumps(data, sort_keys=True, ensure_ascii=False))
    return rows.set_column(rows.schema.get_field_index("meta"), "meta", pa.array(metas, pa.string()))


def _fill_keys(rows: pa.Table) -> pa.Table:
    """Keys for rows without one: sha256 of the prompt, or of the conversation's JSON when there
    is no prompt (as the store would), needed to split."""
    keys = rows["key"].to_pylist()
    if None not in keys:
        return rows
    prompts = [p if p is not None else m for p, m in zip(rows["prompt"].to_pylist(), rows["messages"].to_pylist())]
    filled = [k if k is not None else sha256_hex(p or "") for k, p in zip(keys, prompts)]
    return rows.set_column(rows.schema.get_field_index("key"), "key", pa.array(filled, pa.string()))


def split_rows(rows: pa.Table, *, train: int | None, heldout: int, seed: int) -> tuple[pa.Table, pa.Table]:
    """Order keys by sha256(seed:key); the first ``heldout`` are held out, then ``train`` (or all)."""
    n = rows.num_rows
    if heldout + (train or 0) > n:
        raise SelfaugError(f"split asks for {heldout} held-out + {train or 0} train rows, the source has {n}",
                           field="task.split", hint="lower split.train or split.heldout")
    order = sorted(range(n), key=lambda i: sha256_hex(f"{seed}:{rows['key'][i].as_py()}"))
    held = order[:heldout]
    rest = order[heldout:]
    picked = rest if train is None else rest[:train]
    return rows.take(pa.array(picked, pa.int64())), rows.take(pa.array(held, pa.int64()))


def execute(ctx: StepContext) -> StepResult:
    task = ctx.step.params["task"]
    names = {"train": ctx.step.outputs["train"], "heldout": ctx.step.outputs["heldout"]}
    cached = {role: ctx.store.version_for_step(ctx.step.id, name) for role, name in names.items()}
    if all(cached.values()):
        return _result(cached, cached_hit=True)
    fields = task.get("fields") or {}
    mapping = {"prompt": fields.get("prompt", "question"), "response": fields.get("response", "answer")}
    fmt = task.get("format", "auto")
    if fmt == "auto" and mapping != {"prompt": "question", "response": "answer"}:
        fmt = "prompt_response"  # fields named in the recipe: read them as they say
    rows = load_rows(_source_spec(ctx, task["source"], fmt), mapping, fields.get("id"))
    rows = _fill_keys(_with_gold(rows, task.get("answer_type", "text")))
    rows = rows.set_column(rows.schema.get_field_index("step_id"), "step_id",
                           pa.array([ctx.step.id] * rows.num_rows, pa.string()))
    split = task.get("split") or {}
    train, held = split_rows(rows, train=split.get("train"), heldout=split.get("heldout", 0),
                             seed=split.get("seed", 0))
    recipe_hash = ctx.plan.recipe_hash
    versions = {
        role: ctx.store.commit(names[role], table, step_id=ctx.step.id, recipe_hash=recipe_hash,
                               message=f"ingest {task.get('name')} ({role})")
        for role, table in (("train", train), ("heldout", held))
    }
    return _result(versions, cached_hit=False)


def _result(versions: dict, *, cached_hit: bool) -> StepResult:
    return StepResult(
        datasets={role: v.ref for role, v in versions.items()},
        metrics={f"{role}_rows": v.n_rows for role, v in versions.items()} | {"cached": cached_hit},
    )

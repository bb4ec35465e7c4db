"""What a report needs to be read on its own: the model, the recipe, the seed, the training set.

Gathered by the ``report`` step from its own ancestry in the plan (report ← evaluate ← train ←
mix) and the results those steps recorded in the store; data still flows one way: the report
reads what upstream steps wrote and changes nothing. Stored in ``report.json`` as
``meta.context``:

    {"recipe": name, "recipe_path": path | null, "recipe_hash": hex, "seed": int,
     "model": {"ref": ..., "revision": ..., "dtype": "float32" (as evaluated) | null},
     "stages": [{"task": name | null, "train_step": name, "method": "full" | "lora" | "freeze",
                 "lr": float, "epochs": float, "model_fingerprint": str | null,
                 "training_set": {"ref": "name@id", "seq": int, "rows": int,
                                  "by_source": {"gold": n, "self": n, ...}} | null}]}
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

from selfaug_compiler.plan import Plan, Step

SOURCE_ORDER = ("gold", "self", "paraphrase", "rewrite", "self_dialogue", "replay")


def ancestors(plan: Plan, step: Step) -> list[Step]:
    """Every step ``step`` depends on, directly or not, in plan order."""
    by_name = {s.name: s for s in plan.steps}
    seen: set[str] = set()
    todo = list(step.inputs)
    while todo:
        name = todo.pop()
        if name in seen or name not in by_name:
            continue
        seen.add(name)
        todo.extend(by_name[name].inputs)
    return [s for s in plan.steps if s.name in seen]


def source_counts(store: Any, ref: str) -> tuple[Any, dict[str, int]]:
    """(version, rows per ``source``) of a dataset version, sources in the canonical order."""
    version = store.resolve(ref)
    return version, _ordered(Counter(store.read(version).column("source").to_pylist()))


def _training_set(store: Any, plan: Plan, train: Step) -> dict[str, Any] | None:
    by_name = {s.name: s for s in plan.steps}
    for name in train.inputs:
        mix = by_name.get(name)
        if mix is None or mix.kind != "mix":
            continue
        result = store.step_result(mix.id) or {}
        ref = (result.get("datasets") or {}).get("dataset")
        if not ref:
            return None
        version, counts = source_counts(store, ref)
        return {"ref": version.ref, "seq": version.seq, "rows": version.n_rows, "by_source": counts}
    return None


def recipe_file(plan: Plan, recipe_dir: Path | None) -> str | None:
    """The recipe file, relative to the working folder when under it (``plan.recipe_path`` is
    relative to a compiled plan's folder, so it is rebuilt from the recipe folder)."""
    if not plan.recipe_path:
        return None
    path = Path(plan.recipe_path)
    if recipe_dir is not None:
        path = Path(recipe_dir).resolve() / path.name
    if path.is_absolute():
        rel = os.path.relpath(path, Path.cwd())
        return path.as_posix() if rel.startswith("..") else Path(rel).as_posix()
    return path.as_posix()


def run_context(plan: Plan, step: Step, store: Any, *, recipe_dir: Path | None = None,
                evaluated_dtype: str | None = None) -> dict[str, Any]:
    """The context block of a report (see the module docstring)."""
    params = step.params
    trains = [s for s in ancestors(plan, step) if s.kind == "train"]
    model_spec: dict[str, Any] = {}
    stages = []
    for i, train in enumerate(trains):
        model_spec = model_spec or ((train.params.get("model") or {}).get("spec") or {})
        spec = train.params.get("train") or {}
        result = store.step_result(train.id) or {}
        task_names = params.get("stages") or []
        stages.append({"task": task_names[i] if i < len(task_names) else None, "train_step": train.name,
                       "method": spec.get("method"), "lr": spec.get("lr"), "epochs": spec.get("epochs"),
                       "model_fingerprint": result.get("model_fingerprint"),
                       "training_set": _training_set(store, plan, train)})
    return {"recipe": params.get("recipe") or plan.recipe_name, "recipe_path": recipe_file(plan, recipe_dir),
            "recipe_hash": plan.recipe_hash, "seed": params.get("seed"),
            "model": {"ref": model_spec.get("ref") or plan.meta.get("model_ref"),
                      "revision": model_spec.get("revision"), "dtype": evaluated_dtype},
            "stages": stages}


def _ordered(counts: dict[str, int]) -> dict[str, int]:
    """Sources in SOURCE_ORDER, unknown ones after (report.json is written with sorted keys)."""
    order = [s for s in SOURCE_ORDER if s in counts] + sorted(s for s in counts if s not in SOURCE_ORDER)
    return {s: counts[s] for s in order}


def mix_text(by_source: dict[str, int]) -> str:
    """``gold 6 · self 237 · paraphrase 157`` (rows per source, in SOURCE_ORDER)."""
    return " · ".join(f"{source} {n}" for source, n in _ordered(by_source).items())


def context_lines(report: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, text) lines naming what the report is about, for the HTML header and the terminal."""
    c = (report.get("meta") or {}).get("context")
    if not c:
        return []
    model = c["model"]
    model_txt = (model.get("ref") or "?") + (f" @ {model['revision']}" if model.get("revision") else "")
    if model.get("dtype"):
        model_txt += f" (evaluated in {model['dtype']})"
    recipe = f"{c.get('recipe') or '?'} · hash {str(c.get('recipe_hash') or '?')[:12]}"
    if c.get("recipe_path"):
        recipe += f" · {c['recipe_path']}"
    lines = [("model", model_txt), ("recipe", recipe), ("seed", str(c.get("seed")))]
    for st in c.get("stages") or []:
        label = "training set" + (f" ({st['task']})" if st.get("task") and len(c["stages"]) > 1 else "")
        ts = st.get("training_set")
        text = (f"{ts['ref'][:ts['ref'].index('@') + 13]} (version {ts['seq']}, {ts['rows']} rows: "
                f"{mix_text(ts['by_source'])})" if ts else "not recorded")
        train = ", ".join(p for p in (st.get("method") and f"{st['method']} fine-tuning",
                                      st.get("lr") is not None and f"lr {st['lr']:g}",
                                      st.get("epochs") is not None and f"{st['epochs']:g} epoch" + "s" * (st["epochs"] != 1)) if p)
        lines.append((label, text + (f"; {train}" if train else "")))
    return lines

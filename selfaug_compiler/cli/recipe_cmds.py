"""`selfaug validate`, `compile`, `schema` and `plan diff`: recipe -> checked plan, no torch.

Nothing imported here (directly or through compile/ and recipe/) may import torch or
transformers; tests/test_cli_imports.py checks it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from selfaug_compiler.errors import Problem, SelfaugError

OUTSIDE_HELP = ("let the recipe name files outside its project (absolute paths, `..`): templates, "
                "extends bases, data; only for recipes you trust (same as SELFAUG_ALLOW_OUTSIDE_PATHS=1)")
SET_HELP = "override a field: --set train.lr=1e-4 (YAML value; repeatable; wins over the file)"


def _problem_dicts(problems: list[Problem]) -> list[dict[str, Any]]:
    return [p.as_dict() for p in problems]


def validate_one(path: Path, overrides: list[str]) -> dict[str, Any]:
    """Load and check one recipe: every problem, sorted by file:line (``compile/validation.py``);
    never raises for a user mistake (it goes into ``problems``)."""
    from selfaug_compiler.compile.validation import validate_recipe

    found = validate_recipe(path, overrides)
    report = found.report
    return {"file": str(path), "ok": found.ok, "problems": found.problems,
            "budget": report.budget if report else None,
            "model": report.model.as_dict() if report and report.model else None,
            "prompting": report.prompting if report else None}


def _count(value: int | None, unknown: str = "?") -> str:
    return unknown if value is None else f"{value:,}"


def _budget_lines(budget: dict[str, Any] | None) -> list[str]:
    if not budget:
        return []
    lines = []
    for s in budget["stages"]:
        source = "rows unknown until ingest (hub dataset)" if s["source_rows"] is None else f"{s['source_rows']:,} rows"
        lines.append(f"  data: {s['task']} {source} -> {_count(s['task_rows'])} train, {s['heldout_rows']:,} held out "
                     f"(~{s['mean_example_tokens']} tokens an example); {_count(s['train_rows'])} rows in the training mix")
    lines.append(f"  budget: generate {_count(budget['rows_to_generate'])} rows / <= "
                 f"{_count(budget['tokens_to_generate'])} tokens; train ~{_count(budget['tokens_to_train'])} tokens; "
                 f"{budget['eval_runs']} eval runs")
    mem = budget.get("memory")
    if mem:
        parts = ", ".join(f"{k.replace('_and_', '+').replace('_', ' ')} {v}" for k, v in mem["train_parts_gib"].items())
        per = f" per process (of {mem['world']})" if mem.get("world", 1) > 1 else ""
        lines.append(f"  memory: ~{mem['train_gib']} GiB to train{per} ({parts}), "
                     f"~{mem['generate_gib']} GiB to generate or evaluate")
        lines.append(f"          {mem['dtype']} on {mem['device']} ({mem['why']}); {mem['params'] / 1e6:.1f}M params; "
                     "rough estimate")
    return lines


def _print_text(results: list[dict[str, Any]]) -> None:
    shown: set[str] = set()  # a warning in a shared file (default.yaml via extends) is printed once
    for r in results:
        for p in r["problems"]:
            text = p.render()
            if p.severity == "warning" and text in shown:
                continue
            shown.add(text)
            print(text, file=sys.stderr)
        errors = [p for p in r["problems"] if p.severity == "error"]
        if errors:
            print(f"{r['file']}: INVALID ({len(errors)} error{'s' if len(errors) > 1 else ''})", file=sys.stderr)
            continue
        model = r["model"]
        what = f" model {model['architecture']} {model['num_layers']} layers ctx {model['context_length']}" if model else ""
        print(f"{r['file']}: ok{what}" + (f"; {r['prompting']}" if r.get("prompting") else ""))
        for line in _budget_lines(r["budget"]):
            print(line)


def _github_escape(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _print_github(results: list[dict[str, Any]]) -> None:
    for r in results:
        for p in r["problems"]:
            loc = p.location
            attrs = [f"file={loc.file if loc and loc.file else r['file']}"]
            if loc and loc.line:
                attrs.append(f"line={loc.line}")
            if loc and loc.column:
                attrs.append(f"col={loc.column}")
            body = "\n".join([f"{p.field}: {p.message}" if p.field else p.message]
                             + p.render().splitlines()[1:])
            print(f"::{'error' if p.severity == 'error' else 'warning'} {','.join(attrs)}::{_github_escape(body)}")
        if r["ok"]:
            print(f"{r['file']}: ok")


def validate(
    recipes: list[Path] = typer.Argument(..., help="recipe YAML files"),
    set_: Optional[list[str]] = typer.Option(None, "--set", help=SET_HELP),
    format: str = typer.Option("text", "--format", help="text | json | github"),
    allow_outside: bool = typer.Option(False, "--allow-outside-paths", help=OUTSIDE_HELP),
    online: bool = typer.Option(False, "--online", help="also ask an openai backend's server (GET /models) "
                                "whether it answers and serves the recipe's model"),
) -> None:
    """Check recipes without loading weights: schema, files, fields, templates, model, budget."""
    from selfaug_compiler.compile.backend_checks import set_online
    from selfaug_compiler.recipe.paths import allow_outside_paths

    allow_outside_paths(allow_outside)
    set_online(online)
    if format not in ("text", "json", "github"):
        raise SelfaugError("unknown --format", expected="text, json or github", found=format)
    results = [validate_one(p, list(set_ or [])) for p in recipes]
    if format == "json":
        out = [{**r, "problems": _problem_dicts(r["problems"])} for r in results]
        print(json.dumps(out, indent=2, sort_keys=True))
    elif format == "github":
        _print_github(results)
    else:
        _print_text(results)
    if not all(r["ok"] for r in results):
        raise typer.Exit(2)


def compile_cmd(
    recipe: Path = typer.Argument(..., help="recipe YAML file"),
    out: Path = typer.Option(..., "-o", "--out", help="output folder for plan.json, run.sh, launch files"),
    set_: Optional[list[str]] = typer.Option(None, "--set", help=SET_HELP),
    allow_outside: bool = typer.Option(False, "--allow-outside-paths", help=OUTSIDE_HELP),
) -> None:
    """Compile a recipe into plan.json, run.sh, accelerate_config.yaml and slurm.sbatch."""
    from selfaug_compiler.compile.checks import check_recipe
    from selfaug_compiler.compile.emit import render_files, write_files
    from selfaug_compiler.compile.planner import build_plan
    from selfaug_compiler.recipe.loader import load_recipe
    from selfaug_compiler.recipe.paths import allow_outside_paths

    allow_outside_paths(allow_outside)
    loaded = load_recipe(recipe, list(set_ or []))
    report = check_recipe(loaded)
    for p in report.problems:
        if p.severity != "error":
            print(p.render(), file=sys.stderr)
    if not report.ok:
        raise SelfaugError(problems=report.errors)
    plan = build_plan(loaded, out)
    written = write_files(out, render_files(plan, loaded.recipe))
    print(f"compiled {recipe} -> {out}: {len(plan.steps)} steps ({', '.join(p.name for p in written)})")


def schema() -> None:
    """Print the recipes' JSON Schema (fields marked x-affects: speed never change step ids)."""
    from selfaug_compiler.recipe.schema import Recipe

    data = Recipe.model_json_schema()
    data["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    data["properties"]["extends"] = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
                                     "description": "base recipe(s), relative to this file"}
    print(json.dumps(data, indent=2, sort_keys=True))


def _load_plan(folder: Path) -> Any:
    from selfaug_compiler.plan import Plan

    path = folder / "plan.json" if folder.is_dir() else folder
    if not path.is_file():
        raise SelfaugError(f"no plan at {path}", expected="a folder written by `selfaug compile`", found=str(path))
    try:
        return Plan.load(path)
    except (ValueError, KeyError, TypeError) as exc:
        raise SelfaugError(f"{path} is not a plan file: {exc}", file=str(path)) from None


def diff_plans(a: Any, b: Any) -> dict[str, list[str]]:
    ids_a = {s.name: s.id for s in a.steps}
    ids_b = {s.name: s.id for s in b.steps}
    return {
        "added": [n for n in ids_b if n not in ids_a],
        "removed": [n for n in ids_a if n not in ids_b],
        "changed": [n for n in ids_a if n in ids_b and ids_a[n] != ids_b[n]],
        "same": [n for n in ids_a if ids_b.get(n) == ids_a[n]],
    }


def plan_diff(
    dir_a: Path = typer.Argument(..., help="compiled folder (or plan.json) A"),
    dir_b: Path = typer.Argument(..., help="compiled folder (or plan.json) B"),
) -> None:
    """List the steps whose ids differ between two compiled plans."""
    a, b = _load_plan(dir_a), _load_plan(dir_b)
    d = diff_plans(a, b)
    ids_a = {s.name: s.id for s in a.steps}
    ids_b = {s.name: s.id for s in b.steps}
    for name in d["added"]:
        print(f"+ {name}  {ids_b[name][:12]}")
    for name in d["removed"]:
        print(f"- {name}  {ids_a[name][:12]}")
    for name in d["changed"]:
        print(f"~ {name}  {ids_a[name][:12]} -> {ids_b[name][:12]}")
    print(f"{len(d['changed'])} changed, {len(d['added'])} added, {len(d['removed'])} removed, {len(d['same'])} same")


def register(app: typer.Typer) -> None:
    """Add this area's commands to the app."""
    app.command("validate")(validate)
    app.command("compile")(compile_cmd)
    app.command("schema")(schema)
    plan_app = typer.Typer(help="Inspect compiled plans.", no_args_is_help=True)
    plan_app.command("diff")(plan_diff)
    app.add_typer(plan_app, name="plan")

"""`selfaug run`: execute a recipe or a compiled plan, reusing every cached step."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from selfaug_compiler.cli.store_note import store_line, store_source
from selfaug_compiler.errors import SelfaugError


def _plan_from_target(target: Path, overrides: list[str]):
    """(plan, recipe folder, recipe store path) for a recipe file, a plan dir or a plan.json."""
    from selfaug_compiler.plan import Plan

    if target.is_dir() or target.suffix == ".json":
        plan_file = target / "plan.json" if target.is_dir() else target
        if not plan_file.is_file():
            raise SelfaugError(f"no plan at {plan_file}", expected="a recipe .yaml, a plan.json or a folder from `selfaug compile`",
                               found=str(target), hint="run `selfaug compile RECIPE -o DIR` first")
        if overrides:
            raise SelfaugError("--set applies to recipes, not compiled plans", field="--set",
                               hint="recompile with --set, or run the recipe directly")
        try:
            plan = Plan.load(plan_file)
        except (ValueError, KeyError, TypeError) as exc:
            raise SelfaugError(f"{plan_file} is not a selfaug plan: {exc}", file=str(plan_file)) from exc
        recipe_dir = plan_file.parent
        if plan.recipe_path:
            recipe_dir = (plan_file.parent / plan.recipe_path).parent
        return plan, recipe_dir.resolve(), plan.meta.get("store")
    from selfaug_compiler.compile.planner import plan_checked_recipe

    plan, loaded = plan_checked_recipe(target, overrides)
    return plan, loaded.base_dir.resolve(), loaded.recipe.store.path


def run_command(
    target: Path = typer.Argument(..., help="recipe .yaml, plan.json, or a folder written by `selfaug compile`"),
    set_: list[str] = typer.Option([], "--set", help="override a recipe field, e.g. --set train.lr=1e-4"),
    store: Optional[Path] = typer.Option(None, "--store", help="store file (wins over $SELFAUG_STORE, then the recipe's store.path, then .selfaug/store.duckdb)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print what would run and what is cached, run nothing"),
    only: list[str] = typer.Option([], "--only", help="run only these steps (names or globs); their inputs must be cached"),
    until: list[str] = typer.Option([], "--until", help="run these steps and everything they depend on"),
    force: list[str] = typer.Option([], "--force", help="re-run these steps even if cached"),
    allow_outside: bool = typer.Option(False, "--allow-outside-paths", help="let the recipe name files outside its "
                                       "project (absolute paths, `..`); only for recipes you trust"),
    shard: Optional[str] = typer.Option(None, "--shard", help="i/n (from 0) or slurm ($SLURM_ARRAY_TASK_ID/COUNT): "
                                        "generate only shard i of each generate step's rows into files; "
                                        "a later run without --shard commits them"),
) -> None:
    """Execute a plan step by step; a second run of a finished recipe does no model work."""
    from selfaug_compiler.recipe.paths import allow_outside_paths

    allow_outside_paths(allow_outside)
    from selfaug_compiler.runner import Runner, select_steps
    from selfaug_compiler.store.lock import resolve_store_path

    plan, recipe_dir, recipe_store = _plan_from_target(target, set_)
    store_path = resolve_store_path(store, recipe_store).resolve()
    steps = select_steps(plan, only or None, until or None)
    typer.echo(store_line(store_path, store_source(store, recipe_store)))
    runner = Runner(plan, store_path=store_path, recipe_dir=recipe_dir, echo=typer.echo, force=force)
    if shard is not None and not dry_run:
        from selfaug_compiler.generate.shards import parse_shard
        from selfaug_compiler.shard_run import run_shard

        run_shard(runner, steps, parse_shard(shard))
        return
    if dry_run:
        outcomes = runner.status(steps)
        for outcome in outcomes:
            mark = "cached " if outcome.status == "cached" else "will run"
            typer.echo(f"{mark}  {outcome.step.name:32s} {outcome.step.kind:9s} {outcome.step.id[:12]}")
        cached = sum(o.status == "cached" for o in outcomes)
        typer.echo(f"{cached} of {len(outcomes)} step(s) cached in {store_path}" + _elsewhere(store_path, target))
        return
    summary = runner.run(steps)
    typer.echo(
        f"run {summary.run_id}: {len(summary.ran)} step(s) ran, {len(summary.cached)} reused from the store ({store_path})"
    )
    report = next((o.result for o in summary.outcomes if o.step.kind == "report" and o.result), None)
    if report is not None:
        _print_report(report)


def _elsewhere(store_path: Path, target: Path) -> str:
    """For a dry run against a store that does not exist: the stores next to it, with the command
    (after ``make demo``, ``.selfaug/lab.duckdb`` holds the steps, not the default store)."""
    from selfaug_compiler.cli.store_note import other_stores, shown_path

    others = other_stores(store_path)
    if store_path.exists() or not others:
        return ""
    first = others.split(", ")[0]
    return (f" (it does not exist; other stores next to it: {others}; e.g. selfaug run {shown_path(target)} "
            f"--dry-run {first})")


def _print_report(result) -> None:
    """The forgetting table and where the report files are (also when the report was cached)."""
    from selfaug_compiler.report.step import print_report

    report_json = result.files.get("report_json")
    if not report_json or not Path(report_json).is_file():
        typer.echo("report: files are missing; run again with --force report to rebuild them")
        return
    print_report(json.loads(Path(report_json).read_text(encoding="utf-8")), result.files)


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)

"""`selfaug study run`: every arm and seed of a study file, then its results section."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from selfaug_compiler.cli.store_note import store_line

study_app = typer.Typer(help="Run a study (several recipes x seeds) and publish its results.", no_args_is_help=True)


@study_app.command("run")
def study_run_command(
    study_file: Path = typer.Argument(..., help="study .yaml (e.g. studies/lab.yaml)"),
    store: Optional[Path] = typer.Option(None, "--store", help="store file (default: the study's `store`)"),
    results: Optional[Path] = typer.Option(None, "--results", help="Markdown file to write (default: the study's `results`)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="list each run as cached or to run, run nothing"),
) -> None:
    """Run each (arm, seed) like `selfaug run` into one store (cached steps are reused, an
    interrupted study resumes), then rewrite the generated section of the results file."""
    from selfaug_compiler.study.publish import first_seed_comparison, results_section, rewrite_hint
    from selfaug_compiler.study.run import run_study
    from selfaug_compiler.study.spec import load_study
    from selfaug_compiler.study.markdown import replace_section

    study = load_study(study_file)
    store_path = (store or study.resolve(study.spec.store)).resolve()
    typer.echo(store_line(store_path, "--store" if store else "the study file's `store`"))
    started = time.monotonic()
    runs = run_study(study, store_path, echo=typer.echo, dry_run=dry_run)
    if dry_run:
        return
    target = results or (study.resolve(study.spec.results) if study.spec.results else None)
    if target is None:
        typer.echo(f"study {study.spec.name}: {len(runs)} run(s) done; no results file configured")
        _print_where(store_path, runs, None)
        return
    target = target.resolve()
    section = results_section(study, runs, target, time.monotonic() - started)
    replace_section(target, section, title=f"Results: {study.spec.name}", study_name=study.spec.name,
                    rewritten_by=rewrite_hint(study))
    comparison = first_seed_comparison(study, runs)
    if comparison is not None:
        from rich.console import Console

        from selfaug_compiler.report.table import compare_table

        Console().print(compare_table(comparison))
    typer.echo(f"study {study.spec.name}: {len(runs)} run(s); results written to {target}")
    _print_where(store_path, runs, target)


def _print_where(store_path: Path, runs: list, results: Path | None) -> None:
    """Where everything is: the store (and how to look inside), each run's report, the results."""
    from selfaug_compiler.cli.store_note import shown_path

    typer.echo("\nwhere things are:")
    typer.echo(f"  store    {store_path}  (selfaug data ls --store {shown_path(store_path)})")
    for run in runs:
        html = run.report_json.with_name("report.html")
        typer.echo(f"  report   {html if html.is_file() else run.report_json}  ({run.key})")
    if results is not None:
        typer.echo(f"  results  {results}")


def register(app: typer.Typer) -> None:
    app.add_typer(study_app, name="study")

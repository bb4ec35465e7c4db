"""The `selfaug` command: a thin typer app. Each area registers its own commands.

Command modules must not import torch or transformers at import time: `validate`, `compile`,
`schema` and `data` stay cheap (tests/test_cli_imports.py guards it). Heavy imports go inside
the command function that needs them.
"""

from __future__ import annotations

import sys

import typer

from selfaug_compiler.cli.help_style import ClickStyleGroup
from selfaug_compiler.errors import SelfaugError, StepFailed

app = typer.Typer(
    name="selfaug",
    cls=ClickStyleGroup,  # `--help` shows flags as flags and TARGET, not `<bool>` and `{target}`
    help="Fine-tune without forgetting: recipes, plans, versioned datasets, forgetting reports.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _register() -> None:
    from selfaug_compiler.cli import data_cmds, eval_cmds, recipe_cmds, run_cmds, study_cmds

    for module in (recipe_cmds, data_cmds, run_cmds, eval_cmds, study_cmds):
        module.register(app)


_register()


def main(argv: list[str] | None = None) -> int:
    """Entry point: user mistakes exit 2 without a traceback, failed runs exit 1."""
    try:
        app(args=argv, standalone_mode=True)
    except SystemExit as exc:  # typer/click exit
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        return code
    except SelfaugError as exc:
        print(exc.render(), file=sys.stderr)
        return 2
    except StepFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: the store is consistent; run the same command again to resume.", file=sys.stderr)
        return 130
    except Exception as exc:  # a damaged or full store reached through store.con directly
        from selfaug_compiler.store.faults import fault

        translated = fault(exc) if type(exc).__module__.split(".")[0] in ("duckdb", "_duckdb") else None
        if translated is None:
            raise
        print(translated.render(), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


def run_main() -> None:
    """Console-script wrapper around ``main``."""
    sys.exit(main())

"""One training process launched by ``accelerate launch``: ``python -m selfaug_compiler.train.worker JOB.json``.

Every rank reads the same job and rows; the loop decides from its rank which micro-batches it
runs and whether it writes files. Errors meant for the user are written to ``error.json`` so the
launching process can raise them again with the same type and message.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from selfaug_compiler.errors import SelfaugError, StepFailed
from selfaug_compiler.train.job import ERROR_FILE, TrainJob, read_rows_jsonl, write_atomic


def error_payload(exc: BaseException) -> dict:
    if isinstance(exc, SelfaugError):
        return {"type": "SelfaugError", "problems": [p.as_dict() for p in exc.problems]}
    if isinstance(exc, StepFailed):
        text = str(exc).split("\n  hint:")[0].removeprefix(f"step {exc.step} failed: ")
        return {"type": "StepFailed", "message": text, "hint": exc.hint}
    return {"type": "StepFailed", "message": f"{type(exc).__name__}: {exc}", "hint": None}


def main(argv: list[str]) -> int:
    job = TrainJob.from_json(Path(argv[0]).read_text(encoding="utf-8"))
    rows = read_rows_jsonl(Path(job.rows_file))
    from selfaug_compiler.train.loop import run_training

    try:
        run_training(job, rows)
    except (SelfaugError, StepFailed) as exc:
        write_atomic(job.out / ERROR_FILE, json.dumps(error_payload(exc)))
        print(str(exc), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Sharded generate steps: shard i of n generates only the rows whose key hashes to i, stages
them in its own files, and one coordinator commits them (standard library + pyarrow; no torch).

Layout under the step's work directory (``<store folder>/artifacts/<step>-<id>/``)::

    shards-of-<n>/shard-<i>/part-<k>.parquet   one file per finished batch (written atomically)
    shards-of-<n>/shard-<i>.done               written when shard i staged all its rows

A shard never writes the store: it reads its inputs with a read-only connection, closes it
before loading the model, and stages only files, so shards on many nodes need no store lock
while they generate. ``selfaug run`` without ``--shard`` (the coordinator) finds the shard
folder of a generate step, checks that every shard is done (else one message naming the missing
ones), stages the files' rows in the store and commits one version: the rows of a one-process
run, since each row's text depends only on its prompt and seed (the engine's contract) and the
version's digest does not depend on row order.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selfaug_compiler.errors import SelfaugError


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def owns(self, key: str) -> bool:
        return shard_of(key, self.count) == self.index


def shard_of(key: str, count: int) -> int:
    """The shard of a row key: a hash, so it depends only on the key and the shard count."""
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:16], 16) % count


def parse_shard(text: str | None, *, slurm: bool = False) -> Shard | None:
    """``--shard i/n`` (0-based i), or with ``slurm`` (``--shard slurm``) the array task of
    ``$SLURM_ARRAY_TASK_ID`` / ``$SLURM_ARRAY_TASK_COUNT`` (``--array=0-(n-1)``)."""
    if text is None:
        return None
    if text == "slurm" or slurm:
        task, count = os.environ.get("SLURM_ARRAY_TASK_ID"), os.environ.get("SLURM_ARRAY_TASK_COUNT")
        if task is None or count is None:
            raise SelfaugError("--shard slurm outside a SLURM array job", field="--shard",
                               expected="SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT in the environment",
                               hint="submit with sbatch --array=0-<n-1>, or pass --shard i/n")
        text = f"{task}/{count}"
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if match is None or not 0 <= int(match[1]) < int(match[2]):
        raise SelfaugError(f"--shard {text!r} is not a shard", field="--shard",
                           expected="i/n with 0 <= i < n (e.g. 0/4), or slurm", found=text,
                           hint="shards are numbered from 0: --shard 0/4 ... --shard 3/4")
    return Shard(int(match[1]), int(match[2]))


def shard_root(work_dir: Path, count: int) -> Path:
    return Path(work_dir) / f"shards-of-{count}"


def _part_dir(work_dir: Path, shard: Shard) -> Path:
    return shard_root(work_dir, shard.count) / f"shard-{shard.index}"


def _done_file(work_dir: Path, shard: Shard) -> Path:
    return shard_root(work_dir, shard.count) / f"shard-{shard.index}.done"


def _read_parts(folder: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    rows: list[dict[str, Any]] = []
    for part in sorted(folder.glob("part-*.parquet")):
        rows.extend(pq.read_table(part).to_pylist())
    return rows


def staged_keys(work_dir: Path, shard: Shard) -> set[str]:
    """Keys shard ``shard`` staged in earlier (interrupted) attempts."""
    return {r["key"] for r in _read_parts(_part_dir(work_dir, shard))}


def stage_part(work_dir: Path, shard: Shard, rows: list[dict[str, Any]]) -> None:
    """Stage one finished batch of shard rows as its own parquet file (temporary name, then rename)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = _part_dir(work_dir, shard)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"part-{len(list(folder.glob('part-*.parquet'))):06d}.parquet"
    tmp = folder / f".{name}.{os.getpid()}.tmp"
    pq.write_table(pa.Table.from_pylist(rows), tmp)
    os.replace(tmp, folder / name)


def mark_done(work_dir: Path, shard: Shard, n_rows: int) -> None:
    from selfaug_compiler.files import write_atomic

    write_atomic(_done_file(work_dir, shard), f"{n_rows}\n")


def staged_counts(work_dir: Path) -> list[int]:
    """Shard counts with a shard folder under this step's work directory."""
    root = Path(work_dir)
    found = [int(m[1]) for p in root.glob("shards-of-*") if (m := re.fullmatch(r"shards-of-(\d+)", p.name))]
    return sorted(found)


def collect(work_dir: Path, step_name: str) -> list[dict[str, Any]] | None:
    """All shards' rows for the coordinator, or None when this step was not sharded.

    Raises one ``SelfaugError`` naming the shards that have not finished staging."""
    counts = staged_counts(work_dir)
    if not counts:
        return None
    if len(counts) > 1:
        raise SelfaugError(f"step {step_name} has shards staged for several shard counts {counts}",
                           field="--shard", expected="one shard count per step",
                           found=", ".join(str(shard_root(work_dir, c)) for c in counts),
                           hint="delete the folders of the shard count you abandoned, then run again")
    count = counts[0]
    missing = [i for i in range(count) if not _done_file(work_dir, Shard(i, count)).is_file()]
    if missing:
        names = ", ".join(f"{i}/{count}" for i in missing)
        raise SelfaugError(f"step {step_name}: shard(s) {names} not staged yet", field="--shard",
                           expected=f"all {count} shards done ({shard_root(work_dir, count)}/shard-<i>.done)",
                           found=f"{count - len(missing)} of {count} done",
                           hint=f"run `selfaug run RECIPE --shard {missing[0]}/{count}` (each missing one), "
                                "then this command again to commit")
    rows: list[dict[str, Any]] = []
    for i in range(count):
        rows.extend(_read_parts(_part_dir(work_dir, Shard(i, count))))
    return rows

"""A few rows of a task's data, read cheaply, to check field names and render templates.

Local files: jsonl, json (a list of objects, or {"data": [...]}), csv, parquet (pyarrow).
Packaged sources: the first documents of the packaged folder (raw field names; the ingest step
may also offer normalized names ``question``/``answer``/``id``/``prompt``/``response``).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

SAMPLE_ROWS = 5
NORMALIZED_FIELDS = ("question", "answer", "id", "prompt", "response")
SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")


class DataSampleError(Exception):
    """The file cannot be read as rows; the message says why."""


def sample_file(path: Path, n: int = SAMPLE_ROWS) -> list[dict[str, Any]]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _sample_jsonl(path.open("rb"), n, path)
    if suffix == ".json":
        return _sample_json(path, n)
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            return [dict(r) for _, r in zip(range(n), csv.DictReader(f))]
    if suffix == ".parquet":
        return _sample_parquet(path, n)
    raise DataSampleError(f"unsupported file type `{suffix or path.name}`; use one of {', '.join(SUFFIXES)}")


def _sample_jsonl(stream: Any, n: int, path: Path) -> list[dict[str, Any]]:
    rows = []
    with stream:
        for lineno, raw in enumerate(stream, 1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except ValueError as exc:
                raise DataSampleError(f"{path} line {lineno} is not JSON: {exc}") from None
            if not isinstance(row, dict):
                raise DataSampleError(f"{path} line {lineno} is not a JSON object")
            rows.append(row)
            if len(rows) >= n:
                break
    return rows


def _sample_json(path: Path, n: int) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise DataSampleError(f"{path} is not JSON: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data[:n]):
        raise DataSampleError(f"{path} must hold a list of objects (or {{\"data\": [...]}})")
    return data[:n]


def _sample_parquet(path: Path, n: int) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
        if pf.metadata.num_row_groups == 0:
            return []
        return pf.read_row_group(0).slice(0, n).to_pylist()
    except Exception as exc:  # pyarrow raises many kinds for a bad file
        raise DataSampleError(f"{path} is not a readable parquet file: {exc}") from None


@lru_cache(maxsize=32)
def _packaged_rows(name: str) -> tuple[tuple[tuple[str, Any], ...], ...]:
    from selfaug_compiler.compile.known_benchmarks import task_source_folder

    folder = task_source_folder(name)
    if folder is None:
        return ()
    requests = sorted(folder.glob("*/requests.jsonl.gz"))
    if requests:
        with gzip.open(requests[0], "rb") as f:
            docs = [r.get("doc", r) for r in _sample_jsonl(io.BufferedReader(f), SAMPLE_ROWS, requests[0])]
        return tuple(tuple(d.items()) for d in docs)
    cases = sorted(folder.glob("*.jsonl"))
    if cases:
        return tuple(tuple(r.items()) for r in _sample_jsonl(cases[0].open("rb"), SAMPLE_ROWS, cases[0]))
    arrows = sorted(folder.glob("**/*.arrow"))
    if arrows:
        import pyarrow as pa

        reader = pa.ipc.open_stream(pa.memory_map(str(arrows[0])))
        batch = reader.read_next_batch()
        return tuple(tuple(r.items()) for r in batch.slice(0, SAMPLE_ROWS).to_pylist())
    return ()


def sample_packaged(name: str) -> list[dict[str, Any]]:
    """The first rows of a packaged source, raw (empty when the format is not known here)."""
    return [dict(r) for r in _packaged_rows(name)]

"""A task's data read cheaply: a few rows to check field names and render templates, how many
rows the source holds, and a larger sample for the budget's length estimates.

Local files: jsonl, json (a list of objects, or {"data": [...]}), csv, parquet (pyarrow); the
row count reads the whole file (parquet: its metadata). Folders saved with ``save_to_disk``: the
Arrow files of the split the recipe names (pyarrow; ``datasets`` is not imported). Packaged
sources: the table ``data.packaged`` builds, which is what the ingest step reads (so the field
names are the ones the run sees). A hub id is not read: its rows are unknown before the run.
"""

from __future__ import annotations

import codecs
import csv
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

SAMPLE_ROWS = 5  # rows for field and template checks
STATS_ROWS = 1000  # rows for the budget's length estimates
SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")


class DataSampleError(Exception):
    """The file cannot be read as rows; the message says why."""


@dataclass(frozen=True)
class SourceRows:
    """What validate knows of a task source: up to ``STATS_ROWS`` rows and the source's row count."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    total: int | None = None  # None: unknown before the run (a hub id)

    @property
    def sample(self) -> list[dict[str, Any]]:
        return self.rows[:SAMPLE_ROWS]


def read_file(path: Path, encoding: str = "utf-8") -> SourceRows:
    """Rows and row count of a local data file (text files in ``encoding``)."""
    codec = "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding  # a byte order mark is fine
    try:
        return SourceRows(sample_file(path, STATS_ROWS, codec), count_file_rows(path, codec))
    except UnicodeError as exc:
        from selfaug_compiler.data.text import undecodable_message

        found = undecodable_message(path, encoding, "task.source.encoding")
        raise DataSampleError(f"{found[0]}; {found[2]}" if found else f"not {encoding} text: {exc}") from None


def count_file_rows(path: Path, encoding: str = "utf-8") -> int:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        with path.open("rb") as f:
            return sum(1 for raw in f if raw.strip())
    if suffix == ".json":
        return len(_json_rows(path, encoding))
    if suffix == ".csv":
        with path.open(newline="", encoding=encoding) as f:
            return sum(1 for _ in csv.DictReader(f))
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    raise DataSampleError(f"unsupported file type `{suffix or path.name}`; use one of {', '.join(SUFFIXES)}")


def sample_file(path: Path, n: int = SAMPLE_ROWS, encoding: str = "utf-8") -> list[dict[str, Any]]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _sample_jsonl(path.open(encoding=encoding), n, path)
    if suffix == ".json":
        return _json_rows(path, encoding)[:n]
    if suffix == ".csv":
        with path.open(newline="", encoding=encoding) as f:
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


def _json_rows(path: Path, encoding: str = "utf-8") -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding=encoding))
    except ValueError as exc:
        raise DataSampleError(f"{path} is not JSON: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise DataSampleError(f"{path} must hold a list of objects (or {{\"data\": [...]}})")
    return data


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
def _packaged(name: str) -> SourceRows:
    from selfaug_compiler.data.packaged import packaged_rows

    rows = packaged_rows(name)  # no Arrow table: building one imports pandas (see data/packaged.py)
    return SourceRows(rows[:STATS_ROWS], len(rows))


def read_packaged(name: str) -> SourceRows:
    """Rows (as the ingest step reads them: ``id``, ``question``, ``answer``, the source's own
    fields) and the row count of packaged task data."""
    found = _packaged(name)
    return SourceRows([dict(r) for r in found.rows], found.total)


def read_hf_folder(folder: Path, split: str | None) -> SourceRows:
    """Rows and row count of a dataset saved with ``save_to_disk`` (a Dataset or a DatasetDict)."""
    import pyarrow as pa

    splits = folder / "dataset_dict.json"
    if splits.is_file():
        names = json.loads(splits.read_text(encoding="utf-8")).get("splits") or []
        if split and split not in names:
            raise DataSampleError(f"split `{split}` is not in {folder} (it has: {', '.join(names)})")
        folder = folder / (split or ("train" if "train" in names else (names or [""])[0]))
    state = folder / "state.json"
    if not state.is_file():
        raise DataSampleError(f"{folder} is not a dataset saved with save_to_disk (no state.json)")
    files = [folder / f["filename"] for f in json.loads(state.read_text(encoding="utf-8")).get("_data_files", [])]
    rows: list[dict[str, Any]] = []
    total = 0
    for path in files:
        try:
            table = pa.ipc.open_stream(pa.memory_map(str(path))).read_all()
        except (OSError, pa.ArrowInvalid) as exc:
            raise DataSampleError(f"{path} is not a readable Arrow file: {exc}") from None
        total += table.num_rows
        if len(rows) < STATS_ROWS:
            rows += table.slice(0, STATS_ROWS - len(rows)).to_pylist()
    return SourceRows(rows, total)

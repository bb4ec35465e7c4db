"""Text data files before DuckDB reads them: emptiness, encoding, CSV shape, each with the line.

DuckDB reads UTF-8 only and, on a bad byte or a ragged CSV row, says little (a CSV sniffer
failure, a line number that counts differently). These helpers find the first problem exactly
(line numbers are 1-based physical lines) so the error names it; they run on the error path or
on files that need transcoding, never on every good import. No heavy imports (``validate`` uses
``undecodable_message``).
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
from pathlib import Path
from typing import IO

TEXT_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".tsv")
_CHUNK = 1 << 20
_BOM = codecs.BOM_UTF8


def text_kind(path: Path) -> str | None:
    """The text format of ``path`` (``jsonl``/``json``/``csv``/``tsv``, ``.gz`` allowed), else None."""
    name = path.name.lower().removesuffix(".gz")
    for suffix in TEXT_SUFFIXES:
        if name.endswith(suffix):
            return "jsonl" if suffix == ".ndjson" else suffix[1:]
    return None


def open_bytes(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def is_utf8(encoding: str) -> bool:
    return codecs.lookup(encoding).name == "utf-8"


def is_blank(path: Path) -> bool:
    """Whether the file holds nothing but whitespace (reads at most until the first other byte)."""
    with open_bytes(path) as f:
        while chunk := f.read(_CHUNK):
            if chunk.strip(b" \t\r\n\x00" + _BOM):
                return False
    return True


def has_bom(path: Path) -> bool:
    with open_bytes(path) as f:
        return f.read(len(_BOM)) == _BOM


def first_undecodable(path: Path, encoding: str) -> tuple[int, int | None, bytes] | None:
    """(line, byte column or None, the bad bytes) of the first text ``encoding`` cannot decode."""
    if "\n".encode(encoding) == b"\n":  # ASCII-compatible: decode line by line, exact position
        with open_bytes(path) as f:
            for number, raw in enumerate(f, 1):
                try:
                    raw.decode(encoding)
                except UnicodeDecodeError as exc:
                    return number, exc.start + 1, raw[exc.start:exc.start + 4]
        return None
    decoder, lines = codecs.getincrementaldecoder(encoding)(), 1  # utf-16/32: newlines are wider
    with open_bytes(path) as f:
        while True:
            chunk = f.read(_CHUNK)
            try:
                lines += decoder.decode(chunk, final=not chunk).count("\n")
            except UnicodeDecodeError as exc:
                done = exc.object[:exc.start].decode(encoding, errors="replace").count("\n")
                return lines + done, None, exc.object[exc.start:exc.start + 4]
            except UnicodeError:  # e.g. "UTF-16 stream does not start with BOM"
                return lines, None, chunk[:4]
            if not chunk:
                return None


def undecodable_message(path: Path, encoding: str, option: str) -> tuple[str, int, str] | None:
    """(message, line, hint) when ``path`` is not ``encoding`` text; ``option`` names where to set it."""
    found = first_undecodable(path, encoding)
    if found is None:
        return None
    line, column, bad = found
    guess = "utf-16" if bad[:2] in (b"\xff\xfe", b"\xfe\xff") else "latin-1 or cp1252"
    where = f" at column {column}" if column else ""
    return (f"line {line} is not {encoding} text (byte 0x{bad[:1].hex()}{where})", line,
            f"set the file's encoding with {option} (e.g. {guess}), or convert the file to UTF-8 "
            "(e.g. with iconv -t UTF-8)")


def transcode(path: Path, encoding: str, dest: Path) -> None:
    """Write ``path`` decoded with ``encoding`` (a UTF-8 BOM dropped) as UTF-8 to ``dest``."""
    codec = "utf-8-sig" if is_utf8(encoding) else encoding
    with open_bytes(path) as raw, io.TextIOWrapper(raw, encoding=codec, newline="") as src, \
            open(dest, "w", encoding="utf-8", newline="") as out:
        while chunk := src.read(_CHUNK):
            out.write(chunk)


def first_ragged_row(path: Path, delimiter: str) -> tuple[int, int, int] | None:
    """(line, fields found, fields in the header) of the first CSV row whose width differs.
    ``path`` is UTF-8 (after ``transcode`` where needed)."""
    with open_bytes(path) as raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            return None
        for row in reader:
            if row and len(row) != len(header):
                return reader.line_num, len(row), len(header)
    return None


def line_of_row(path: Path, kind: str, index: int) -> int | None:
    """The physical line where data row ``index`` (0-based) starts, for jsonl and csv/tsv files
    (UTF-8, as DuckDB read them); None for other formats."""
    with open_bytes(path) as raw, io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline="") as f:
        if kind == "jsonl":
            rows = (n for n, line in enumerate(f, 1) if line.strip())
        elif kind in ("csv", "tsv"):
            reader = csv.reader(f, delimiter="," if kind == "csv" else "\t")
            next(reader, None)
            rows = (reader.line_num for row in reader if row)
        else:
            return None
        for i, line in enumerate(rows):
            if i == index:
                return line
    return None

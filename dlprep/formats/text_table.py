"""Tables of texts (CSV, TSV, JSON Lines) -> a text column, an optional label column and extra
columns, via pandas. Bad bytes, malformed rows and unknown columns raise errors naming the
file, the line/byte and the columns that exist.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DlprepError, FormatError

FORMATS = ("auto", "csv", "tsv", "jsonl")
_SUFFIX_FORMAT = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl",
                  ".ndjson": "jsonl", ".json": "jsonl"}
_PANDAS_LINE = re.compile(r"line (\d+)|row (\d+)")


@dataclass
class TextTable:
    """Columns read from a table: ``texts[i]`` with ``labels[i]`` and ``extra[col][i]``;
    ``rows[i]`` is the 0-based data row in the file."""

    texts: list[str]
    labels: list[str] | None
    rows: list[int]
    extra: dict[str, list[str]] = field(default_factory=dict)


def table_format(path: Path, fmt: str = "auto") -> str:
    """``csv``/``tsv``/``jsonl`` from ``fmt``, or from the file suffix when ``auto``."""
    if fmt not in FORMATS:
        raise DlprepError(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}")
    if fmt != "auto":
        return fmt
    return _SUFFIX_FORMAT.get(path.suffix.lower(), "csv")


def check_encoding(encoding: str) -> str:
    """``encoding`` if it decodes bytes to text; else a ``DlprepError`` saying why (unknown, or
    a bytes/str transform such as ``rot13``, ``base64`` or ``zlib``)."""
    try:
        codecs.lookup(encoding)
    except LookupError as exc:
        raise DlprepError(f"--encoding: unknown encoding {encoding!r}") from exc
    try:
        b"a".decode(encoding)  # a bytes->bytes or str->str codec refuses this
    except UnicodeError:
        pass  # a text encoding (e.g. utf-16: one byte is a truncated unit)
    except LookupError as exc:
        raise DlprepError(f"--encoding: {encoding!r} is not a text encoding (it does not "
                          f"decode bytes to text); use e.g. utf-8 or latin-1") from exc
    return encoding


def decode_text(path: Path, data: bytes, encoding: str) -> str:
    """Decode ``data`` strictly; a ``FormatError`` names the first bad byte and the fix."""
    check_encoding(encoding)
    try:
        return data.decode(encoding).removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise FormatError(path, exc.start, f"not valid {encoding} text ({exc.reason}); pass "
                                           f"--encoding latin-1 (or the file's encoding)") from exc


def _line_offset(data: bytes, line: int) -> int:
    """Byte offset where 1-based ``line`` starts (-1 if past the end)."""
    pos = 0
    for _ in range(line - 1):
        pos = data.find(b"\n", pos) + 1
        if pos == 0:
            return -1
    return pos


def _first_long_row(text: str, sep: str) -> tuple[int, int, int]:
    """(line, fields, header fields) of the first row with more fields than the header."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep)
    width = len(next(reader, []))
    for row in reader:
        if len(row) > width:
            return reader.line_num, len(row), width
    return -1, 0, width


def _read_delimited(path: Path, text: str, raw: bytes, sep: str):  # type: ignore[no-untyped-def]
    import pandas as pd

    kind = "TSV" if sep == "\t" else "CSV"
    try:
        with warnings.catch_warnings():
            # a row longer than the header would silently become an index or be cut short
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False,
                                index_col=False, engine="c")
    except pd.errors.EmptyDataError as exc:
        raise FormatError(path, 0, "empty table (no header line)") from exc
    except pd.errors.ParserWarning as exc:
        line, fields, width = _first_long_row(text, sep)
        raise FormatError(path, _line_offset(raw, line) if line > 0 else -1,
                          f"malformed {kind}: line {line} has {fields} fields, the header "
                          f"{width} (quote texts that contain the delimiter)") from exc
    except pd.errors.ParserError as exc:
        msg = str(exc).strip().splitlines()[0]
        m = _PANDAS_LINE.search(msg)
        offset = _line_offset(raw, int(m.group(1) or m.group(2))) if m else -1
        raise FormatError(path, offset, f"malformed {kind}: {msg}") from exc
    return frame.fillna("")  # short rows


def _read_jsonl(path: Path, text: str):  # type: ignore[no-untyped-def]
    import pandas as pd

    records = []
    offset = 0
    for n, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise FormatError(path, offset + exc.pos, f"line {n}: invalid JSON ({exc.msg})") \
                    from exc
            if not isinstance(obj, dict):
                raise FormatError(path, offset, f"line {n}: expected a JSON object, got "
                                                f"{type(obj).__name__}")
            records.append(obj)
        offset += len(line.encode("utf-8")) + 1
    if not records:
        raise FormatError(path, 0, "no JSON objects found")
    return pd.DataFrame.from_records(records).fillna("").astype(str)


def read_text_table(path: Path, text_column: str, label_column: str | None = None, *,
                    extra_columns: Sequence[str] = (), fmt: str = "auto",
                    encoding: str = "utf-8", shown_as: Path | None = None) -> TextTable:
    """Read ``text_column`` (and ``label_column``/``extra_columns``) of a CSV/TSV/JSONL file.

    Raises ``FormatError`` for undecodable bytes or malformed rows (with the byte offset) and
    ``DlprepError`` for a column that does not exist (listing those that do). Messages name
    ``shown_as`` (default ``path``).
    """
    raw = Path(path).read_bytes()
    path = Path(shown_as or path)
    text = decode_text(path, raw, encoding)
    kind = table_format(path, fmt)
    if kind == "jsonl":
        frame = _read_jsonl(path, text)
    else:
        frame = _read_delimited(path, text, raw, "\t" if kind == "tsv" else ",")
    columns = [str(c) for c in frame.columns]
    wanted = [("--text-column", text_column)]
    if label_column:
        wanted.append(("--label-column", label_column))
    wanted += [("--meta-columns", c) for c in extra_columns]
    for flag, col in wanted:
        if col not in columns:
            raise DlprepError(f"{path}: {flag} {col!r} is not a column; columns are: "
                              f"{', '.join(columns)}")
    return TextTable(
        texts=frame[text_column].tolist(),
        labels=frame[label_column].tolist() if label_column else None,
        rows=list(range(len(frame))),
        extra={c: frame[c].tolist() for c in extra_columns},
    )

"""Social-media posts: X API v2 post objects and responses, JSON Lines, JSON and CSV exports.

A :class:`Post` is a text plus string fields (``id``, ``author_id``, ``author`` (a username),
``created_at``, ``lang``, and any other scalar field or column). Accepted inputs:

* JSON Lines: one object per line, each an X API v2 post object (``{"id", "text", ...}``), a
  plain ``{"text": ...}`` object, or a whole saved v2 response (``{"data": [...], "includes":
  {"users": [...]}, "meta": {...}}``, its posts taken in order, usernames from
  ``includes.users``);
* JSON (``.json``): one such response, or a list of post objects;
* CSV/TSV: a header row and a text column (``text_field``).

A long post's full text (``note_tweet.text``) replaces its truncated ``text``. Every problem is
a :class:`~dlprep.errors.FormatError` naming the file, the line and the field.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DlprepError, FormatError
from .text_table import decode_text

FORMATS = ("auto", "jsonl", "json", "csv", "tsv")
_SUFFIX = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv",
           ".tab": "tsv"}
#: other names of the standard fields in CSV exports (e.g. text_emotion.csv's tweet_id)
ALIASES = {"tweet_id": "id", "post_id": "id", "username": "author", "user": "author"}


@dataclass(frozen=True)
class Post:
    """One post: its text and its scalar fields as strings (missing ones absent)."""

    text: str
    fields: Mapping[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.fields.get("id", "")


def posts_format(path: Path, fmt: str = "auto") -> str:
    """``jsonl``/``json``/``csv``/``tsv`` from ``fmt``, or from the suffix when ``auto``."""
    if fmt not in FORMATS:
        raise DlprepError(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}")
    if fmt != "auto":
        return fmt
    kind = _SUFFIX.get(path.suffix.lower())
    if kind is None:
        raise DlprepError(f"{path}: cannot tell the format from the suffix {path.suffix!r}; "
                          f"pass --format jsonl, json, csv or tsv")
    return kind


def _scalar(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__}"


def post_from_object(obj: Mapping[str, Any], where: str, text_field: str = "text",
                     users: Mapping[str, str] | None = None) -> Post:
    """A :class:`Post` from a v2 post object (or any object with a string ``text_field``).

    ``users`` maps author ids to usernames (a response's ``includes.users``). ``where``
    ("FILE line N") starts every error message.
    """
    if not isinstance(obj, Mapping):
        raise FormatError(where, -1, f"expected a post object, got {_json_type(obj)}")
    note = obj.get("note_tweet")
    text = note.get("text") if isinstance(note, Mapping) and text_field == "text" else None
    if text is None:
        if text_field not in obj:
            keys = ", ".join(sorted(map(str, obj))[:12]) or "none"
            raise FormatError(where, -1, f"field {text_field!r} is missing (fields: {keys})")
        text = obj[text_field]
    if not isinstance(text, str):
        raise FormatError(where, -1, f"field {text_field!r} is {_json_type(text)}, expected a "
                                     f"string")
    fields = {ALIASES.get(k, k): s for k, v in obj.items()
              if k != text_field and (s := _scalar(v)) is not None}
    if users and fields.get("author_id") in users:
        fields.setdefault("author", users[fields["author_id"]])
    return Post(text, fields)


def posts_from_response(doc: Mapping[str, Any], where: str, text_field: str = "text"
                        ) -> list[Post]:
    """The posts of one X API v2 response (``data``; usernames from ``includes.users``).
    An answer without ``data`` (no results) gives []; one with ``errors`` and no ``data`` is
    a ``FormatError`` quoting the first error."""
    data = doc.get("data")
    if data is None:
        errors = doc.get("errors")
        if errors and isinstance(errors, list) and isinstance(errors[0], Mapping):
            first = errors[0]
            detail = first.get("detail") or first.get("message") or first.get("title") or first
            raise FormatError(where, -1, f"the API answered with an error: {detail}")
        return []
    if not isinstance(data, list):
        raise FormatError(where, -1, f"field 'data' is {_json_type(data)}, expected a list "
                                     f"of posts")
    users: dict[str, str] = {}
    includes = doc.get("includes")
    if isinstance(includes, Mapping) and isinstance(includes.get("users"), list):
        users = {str(u["id"]): str(u["username"]) for u in includes["users"]
                 if isinstance(u, Mapping) and "id" in u and "username" in u}
    return [post_from_object(obj, f"{where} data[{i}]", text_field, users)
            for i, obj in enumerate(data)]


def _is_response(obj: Any) -> bool:
    return isinstance(obj, Mapping) and ("data" in obj or "meta" in obj) and "text" not in obj


def _jsonl(path: Path, text: str, text_field: str) -> Iterator[Post]:
    for n, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{path} line {n}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise FormatError(where, -1, f"invalid JSON at column {exc.colno} ({exc.msg})") \
                from exc
        if _is_response(obj):
            yield from posts_from_response(obj, where, text_field)
        else:
            yield post_from_object(obj, where, text_field)


def _json(path: Path, text: str, text_field: str) -> Iterator[Post]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FormatError(f"{path} line {exc.lineno}", -1,
                          f"invalid JSON at column {exc.colno} ({exc.msg})") from exc
    if _is_response(doc):
        yield from posts_from_response(doc, str(path), text_field)
    elif isinstance(doc, list):
        for i, obj in enumerate(doc):
            yield post_from_object(obj, f"{path} item {i}", text_field)
    else:
        raise FormatError(path, -1, "expected an X API response ({\"data\": [...]}) or a list "
                                    "of post objects")


def _delimited(path: Path, text: str, text_field: str, sep: str) -> Iterator[Post]:
    kind = "TSV" if sep == "\t" else "CSV"
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep, strict=True)
    try:
        header = next(reader, None)
        if not header:
            raise FormatError(path, -1, f"empty {kind} (no header line)")
        if text_field not in header:
            raise FormatError(f"{path} line 1", -1, f"no column {text_field!r} (columns: "
                                                    f"{', '.join(header)}); pass --text-column")
        names = [ALIASES.get(h, h) for h in header]
        col = header.index(text_field)
        start = reader.line_num + 1
        for row in reader:
            if not row:
                start = reader.line_num + 1
                continue
            if len(row) > len(header):
                raise FormatError(f"{path} line {start}", -1,
                                  f"{len(row)} fields, the header has {len(header)} (quote "
                                  f"texts that contain {'a tab' if sep == chr(9) else 'a comma'})")
            row += [""] * (len(header) - len(row))
            fields = {k: v for i, (k, v) in enumerate(zip(names, row, strict=True))
                      if i != col and v != ""}
            yield Post(row[col], fields)
            start = reader.line_num + 1
    except csv.Error as exc:
        raise FormatError(f"{path} line {reader.line_num}", -1, f"malformed {kind}: {exc}") \
            from exc


def read_posts(path: Path, *, fmt: str = "auto", text_field: str = "text",
               encoding: str = "utf-8", shown_as: Path | None = None) -> list[Post]:
    """All posts of a JSONL/JSON/CSV/TSV file, in file order. Errors name ``shown_as``
    (default ``path``), the line and the field."""
    shown = Path(shown_as or path)
    kind = posts_format(shown, fmt)
    raw = Path(path).read_bytes()
    try:
        text = decode_text(shown, raw, encoding)
    except FormatError as exc:  # say which line, not only which byte
        line = raw[:max(exc.offset, 0)].count(b"\n") + 1
        raise FormatError(f"{shown} line {line}", exc.offset, exc.what) from exc
    if kind == "jsonl":
        return list(_jsonl(shown, text, text_field))
    if kind == "json":
        return list(_json(shown, text, text_field))
    return list(_delimited(shown, text, text_field, "\t" if kind == "tsv" else ","))

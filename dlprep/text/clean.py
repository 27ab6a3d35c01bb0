"""Text cleaning: Project Gutenberg header/footer stripping, Unicode normalisation, control
characters, paragraph chunking and de-duplication of identical documents.

Defaults used by the text builders (docs/TEXT.md): NFC on, control characters removed (CRLF and
lone CR become LF; tab and LF are kept), identical documents dropped (first one kept).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

NORMAL_FORMS = ("NFC", "NFKC", "NFD", "NFKD", "none")

# A line that ends the PG header: the modern/older START markers, and the end of the 1990s
# "small print" licence that precedes the text in the oldest files.
_START = re.compile(
    r"^[ \t]*\*{2,}[ \t]*start[ \t]+of[ \t]+(the[ \t]+|this[ \t]+)?"
    r"(project[ \t]+gutenberg|copyrighted)"
    r"|^[ \t]*\*+[ \t]*end[ \t]*\*?[ \t]*the[ \t]+small[ \t]+print",
    re.IGNORECASE | re.MULTILINE,
)
# A line that starts the PG footer: "*** END OF THE/THIS PROJECT GUTENBERG ...", "End of (the)
# Project Gutenberg's ...", "END OF PROJECT GUTENBERG", and the German/French variants.
_END = re.compile(
    r"^[ \t]*\**[ \t]*end[ \t]+of[ \t]+(the[ \t]+|this[ \t]+)?(project[ \t]+gutenberg|copyrighted)"
    r"|^[ \t]*ende[ \t]+diese[rs]?[ \t]+(projekt|project)[ \t]+gutenberg"
    r"|^[ \t]*fin[ \t]+de[ \t]+(the[ \t]+)?project[ \t]+gutenberg",
    re.IGNORECASE | re.MULTILINE,
)
# Credit paragraphs right after the START marker in older files.
_CREDIT_START = re.compile(
    r"^\s*(produced\s+by|e-?text\s+prepared\s+by|this\s+e-?(text|book)\s+was\s+(prepared|produced)"
    r"|this\s+project\s+gutenberg\s+e-?text\s+was\s+prepared|transcribed\s+(from|by)"
    r"|prepared\s+by|credits?\s*:|updated\s+editions\s+will\s+replace)",
    re.IGNORECASE,
)
_CREDIT_ANYWHERE = re.compile(
    r"distributed\s+proofread|pgdp\.net|online\s+distributed|internet\s+archive\)"
    r"|by\s+the\s+internet\s+archive|google\s+print\s+project",
    re.IGNORECASE,
)
# Old complete-Shakespeare files repeat a World Library notice inside the text.
_LEGALESE_START = re.compile(r"^\s*<<\s*this\s+electronic\s+version\s+of", re.IGNORECASE)
_LEGALESE_END = re.compile(r"service\s+that\s+charges\s+for\s+download", re.IGNORECASE)
_HEADER_FIELD = re.compile(r"^\s*(title|author|language|release\s+date|posting\s+date)"
                           r"\s*:\s*(.*)$", re.IGNORECASE)
_EBOOK_NO = re.compile(r"e-?book\s*#\s*(\d+)", re.IGNORECASE)
_FIRST_LINE = re.compile(r"project\s+gutenberg\S*\s+e-?book\s+of\s+(.+?)(?:,\s+by\s+(.+))?$",
                         re.IGNORECASE)
_HEADER_SCAN_LINES = 1500
_CREDIT_PARAGRAPHS = 3


@dataclass
class GutenbergText:
    """A Project Gutenberg file split into body and header metadata (``found`` = markers seen)."""

    body: str
    title: str = ""
    author: str = ""
    language: str = ""
    ebook_id: int | None = None
    license: str = ""
    found_start: bool = False
    found_end: bool = False


def normalize_newlines(text: str) -> str:
    """CRLF and lone CR -> LF; a leading byte-order mark is dropped."""
    text = text.removeprefix("\ufeff")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def _blank(line: str) -> bool:
    return not line.strip()


def _trim_blank(lines: list[str]) -> list[str]:
    start, end = 0, len(lines)
    while start < end and _blank(lines[start]):
        start += 1
    while end > start and _blank(lines[end - 1]):
        end -= 1
    return lines[start:end]


def _header_fields(lines: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    current = ""
    for line in lines:
        m = _HEADER_FIELD.match(line)
        if m:
            key = m.group(1).lower().replace(" ", "_")
            current = key
            out.setdefault(key, m.group(2).strip())
        elif current in ("title", "author") and line.startswith((" ", "\t")) and line.strip():
            out[current] += " " + line.strip()  # wrapped title/author line
        else:
            current = ""
    if lines:
        m = _FIRST_LINE.search(lines[0].strip())
        if m:
            out.setdefault("title", m.group(1).strip())
            if m.group(2):
                out.setdefault("author", m.group(2).strip())
    return out


def _drop_credits(lines: list[str]) -> list[str]:
    """Remove up to three leading paragraphs of producer credits ("Produced by ...")."""
    lines = _trim_blank(lines)
    for _ in range(_CREDIT_PARAGRAPHS):
        end = 0
        while end < len(lines) and not _blank(lines[end]):
            end += 1
        para = lines[:end]
        if not para:
            break
        text = " ".join(para)
        if _CREDIT_START.match(para[0]) or (len(para) <= 4 and _CREDIT_ANYWHERE.search(text)):
            lines = _trim_blank(lines[end:])
        else:
            break
    return lines


def _drop_legalese(lines: list[str]) -> list[str]:
    out: list[str] = []
    inside = False
    for line in lines:
        if not inside and _LEGALESE_START.match(line):
            inside = True
        if inside:
            if _LEGALESE_END.search(line):
                inside = False
            continue
        out.append(line)
    return out


def _line_end(text: str, pos: int) -> int:
    end = text.find("\n", pos)
    return len(text) if end < 0 else end


def _line_offset(text: str, line: int) -> int:
    """Offset where 0-based ``line`` starts (``len(text)`` past the end)."""
    pos = 0
    for _ in range(line):
        pos = text.find("\n", pos) + 1
        if pos == 0:
            return len(text)
    return pos


_END_NEEDLES = ("utenber", "UTENBER", "opyright", "OPYRIGHT")


def _find_end(text: str, pos: int) -> int:
    """Offset of the first END-marker line starting at or after line start ``pos`` (-1: none).

    Every END marker names (Project) Gutenberg or COPYRIGHTED, so only the lines holding one
    of those words are matched against the pattern: the scan runs at ``str.find`` speed."""
    nxt = {needle: text.find(needle, pos) for needle in _END_NEEDLES}
    while True:
        hits = [i for i in nxt.values() if i >= 0]
        if not hits:
            return -1
        hit = min(hits)
        line_start = text.rfind("\n", 0, hit) + 1
        line_end = _line_end(text, hit)
        if line_start >= pos and _END.match(text, line_start, line_end):
            return line_start
        for needle, i in nxt.items():  # each needle's next occurrence after this line
            if 0 <= i <= line_end:
                nxt[needle] = text.find(needle, line_end + 1)


def strip_gutenberg(text: str) -> GutenbergText:
    """Split a Project Gutenberg text into its body and header metadata.

    The BOM is dropped and line ends become LF. The body starts after the last START marker
    (``*** START OF THE/THIS PROJECT GUTENBERG``, ``***START OF ...``,
    ``*END*THE SMALL PRINT``, ...)
    that precedes the first END marker, and stops at the first END marker after it
    (``*** END OF ...``, ``End of (the) Project Gutenberg's ...``, ``END OF PROJECT GUTENBERG``).
    Producer credits that follow the START marker ("Produced by ...", "Distributed
    Proofreaders") and old World Library notices are removed; leading/trailing blank lines too.
    A text without markers is returned whole (``found_start``/``found_end`` False).
    """
    text = normalize_newlines(text)
    scan_to = _line_offset(text, _HEADER_SCAN_LINES)
    starts = [m.start() for m in _START.finditer(text, 0, scan_to)]  # line starts
    body_from = 0
    if starts:
        first_end = _find_end(text, _line_end(text, starts[0]) + 1)
        marker = max(p for p in starts if p < (first_end if first_end >= 0 else len(text)))
        header = text[:marker].split("\n")
        body_from = _line_end(text, marker) + 1
    else:
        header = []
    end = _find_end(text, body_from)
    body = text[body_from:end if end >= 0 else len(text)]
    body_lines = body.split("\n")
    if starts:
        body_lines = _drop_credits(body_lines)
    if "<<" in body:
        body_lines = _drop_legalese(body_lines)
    body_lines = _trim_blank(body_lines)
    fields = _header_fields(header)
    header_text = "\n".join(header)
    m = _EBOOK_NO.search(header_text)
    ebook = int(m.group(1)) if m else None
    if re.search(r"copyrighted\s+project\s+gutenberg", header_text, re.IGNORECASE):
        license_note = "copyrighted Project Gutenberg eBook: see its header for the terms"
    elif starts:
        license_note = ("Project Gutenberg License (www.gutenberg.org/license); public domain "
                        "in the USA, check the laws of your country")
    else:
        license_note = ""
    return GutenbergText(
        body="\n".join(body_lines), title=fields.get("title", ""),
        author=fields.get("author", ""), language=fields.get("language", ""), ebook_id=ebook,
        license=license_note, found_start=bool(starts), found_end=end >= 0,
    )


# Cc control characters except TAB and LF, the zero-width no-break space (stray BOMs), and
# lone surrogates (from JSON escapes; they become U+FFFD), found in one pass.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ufeff\ud800-\udfff]")


def _control_replacement(m: re.Match[str]) -> str:
    return "\ufffd" if "\ud800" <= m.group() <= "\udfff" else ""


def clean_text(text: str, *, normalize: str = "NFC", control: bool = True) -> str:
    """Return ``text`` with Unicode normalisation ``normalize`` (or "none") and, when
    ``control``, line ends as LF, other control characters (Cc, BOM) removed and lone
    surrogates (from JSON escapes) replaced by U+FFFD."""
    if control:
        text = _CONTROL.sub(_control_replacement, normalize_newlines(text))
    if normalize != "none":
        if normalize not in NORMAL_FORMS:
            raise ValueError(f"normalize must be one of {', '.join(NORMAL_FORMS)}, got "
                             f"{normalize!r}")
        text = unicodedata.normalize(normalize, text)
    return text


_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n+")


def chunk_paragraphs(text: str, target_chars: int) -> list[str]:
    """Cut ``text`` at paragraph breaks into pieces of at least ``target_chars`` characters
    (the last may be shorter); ``"".join(pieces) == text``. ``target_chars <= 0``: no cut."""
    if target_chars <= 0 or len(text) <= target_chars:
        return [text] if text else []
    pieces, start = [], 0
    for m in _PARAGRAPH_BREAK.finditer(text):
        if m.end() - start >= target_chars:
            pieces.append(text[start:m.end()])
            start = m.end()
    if start < len(text):
        tail = text[start:]
        if pieces and len(tail) < target_chars // 4:
            pieces[-1] += tail  # no tiny last piece
        else:
            pieces.append(tail)
    return pieces

"""HTML fragments (Stack Exchange post bodies, API descriptions) -> plain text.

Not a boilerplate remover for whole pages (that is :mod:`dlprep.text.extract`, the ``web``
extra): a small, dependency-free converter for the HTML that a Markdown renderer writes.
Paragraphs, headings, list items, quotes, table rows and ``<pre>`` blocks become lines
separated by blank lines, ``<br>`` a line break, list items start with ``- ``; text inside
``<pre>`` keeps its whitespace, elsewhere runs of whitespace become one space; entities are
decoded; ``<script>``/``<style>`` content, comments and images are dropped (link text is kept).
"""

from __future__ import annotations

import html
import re

_TOKEN = re.compile(r"""<!--.*?-->|<(/?)([A-Za-z][A-Za-z0-9]*)((?:[^>"']|"[^"]*"|'[^']*')*)>""",
                    re.S)
_SPACE = re.compile(r"[ \t\r\n\f\v]+")
_BLOCK = frozenset({"p", "div", "blockquote", "pre", "h1", "h2", "h3", "h4", "h5", "h6", "ul",
                    "ol", "table", "tr", "hr", "dl", "section", "article", "header", "footer",
                    "figure", "details", "summary"})
_LINE = frozenset({"li", "dt", "dd", "td", "th"})
_SKIP = frozenset({"script", "style"})
_BLANK_LINES = re.compile(r"\n[ \t]*(?:\n[ \t]*)+")


def html_to_text(fragment: str) -> str:
    """The text of an HTML fragment (see the module docstring); ``""`` for no text."""
    if "<" not in fragment and "&" not in fragment:
        return _SPACE.sub(" ", fragment).strip()
    out: list[str] = []
    pre = 0
    skip = ""
    pos = 0
    for m in _TOKEN.finditer(fragment):
        if not skip and m.start() > pos:
            _text(out, fragment[pos:m.start()], pre)
        pos = m.end()
        if m.group(2) is None:  # a comment
            continue
        closing, tag = m.group(1) == "/", m.group(2).lower()
        if skip:
            if closing and tag == skip:
                skip = ""
            continue
        if tag in _SKIP and not closing and not m.group(3).rstrip().endswith("/"):
            skip = tag
        elif tag == "br":
            out.append("\n")
        elif tag == "pre":
            out.append("\n\n")
            pre = max(0, pre - 1) if closing else pre + 1
        elif tag in _BLOCK:
            out.append("\n\n")
        elif tag in _LINE:
            if not closing:
                out.append("\n- " if tag == "li" else "\n")
        elif tag == "img" or tag == "input":
            continue
    if not skip and pos < len(fragment):
        _text(out, fragment[pos:], pre)
    text = "".join(out)
    lines = [ln.rstrip() for ln in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip("\n").strip()


def _text(out: list[str], raw: str, pre: int) -> None:
    text = html.unescape(raw)
    if pre:
        out.append(text.replace("\r\n", "\n"))
        return
    text = _SPACE.sub(" ", text)
    if text == " " and (not out or out[-1].endswith(("\n", " "))):
        return
    out.append(text)

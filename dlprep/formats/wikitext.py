"""Wikitext -> plain text, links and infobox fields, in one pass of compiled regexes.

:func:`clean_wikitext` removes what is not running prose -- templates (``{{...}}``, nested),
tables (``{| ... |}``, nested), ``<ref>``/``<gallery>``/``<math>`` and other invisible
extension tags, HTML comments, File/Image/Category links (with their nested captions),
behaviour switches (``__NOTOC__``) -- and keeps the text of links (``[[target|text]]`` ->
``text``, ``[http://x title]`` -> ``title``), of bold/italic and of other HTML tags. Headings
are kept as their text on a line of their own, or dropped (``headings=False``). HTML entities
are decoded. The reference it is measured against (``benchmarks/wiki_bench.py``) is
mwparserfromhell with the same nodes removed, then ``strip_code()``.

Nesting (templates in templates, links in file captions) is handled by one scan over the
bracket tokens with a stack; every other step is a compiled regular expression. The cleaner is
a pure function of its input, so blocks of pages can be cleaned in any process.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable

# namespaces whose links are not article text (English names and the canonical ones)
NON_TEXT_LINK_NS = frozenset({"file", "image", "category", "media"})
# namespace prefixes of non-article pages (a link to them is not an article-to-article link)
NAMESPACE_NAMES = frozenset({
    "media", "special", "talk", "user", "user talk", "wikipedia", "wikipedia talk", "project",
    "project talk", "file", "file talk", "image", "image talk", "mediawiki", "mediawiki talk",
    "template", "template talk", "help", "help talk", "category", "category talk", "portal",
    "portal talk", "book", "book talk", "draft", "draft talk", "education program",
    "education program talk", "timedtext", "timedtext talk", "module", "module talk", "gadget",
    "gadget talk", "gadget definition", "gadget definition talk", "topic", "wp", "wt", "cat",
    "wikt", "wiktionary", "wikisource", "wikiquote", "wikibooks", "wikinews", "wikiversity",
    "wikivoyage", "wikidata", "commons", "meta", "m", "s", "q", "b", "n", "v", "voy", "d", "c",
    "mw", "species", "foundation", "wmf", "phab", "w",
})
# extension tags whose content is not prose (mwparserfromhell's invisible tags, plus ref)
_INVISIBLE = ("ref|references|gallery|math|chem|ce|hiero|score|graph|timeline|imagemap|"
              "inputbox|categorytree|templatedata|section|mapframe|maplink")

_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.S)
_INVISIBLE_SELF = re.compile(rf"<(?:{_INVISIBLE})\b[^>]*/>", re.I)
_INVISIBLE_PAIR = re.compile(rf"<({_INVISIBLE})\b[^>]*>.*?</\1\s*>", re.I | re.S)
# bracket tokens: templates, tables (at a line start), links
_TOKENS = re.compile(r"\{\{|\}\}|\[\[|\]\]|\n[ \t:]*\{\||\n[ \t]*\|\}")
_EXTERNAL = re.compile(r"\[(?:https?:|ftp:|//|mailto:|news:|irc:)[^\s\]]*[ \t]*([^\]\n]*)\]")
_QUOTES = re.compile(r"''+")
_HEADING = re.compile(r"\n(={1,6})[ \t]*([^\n]+?)[ \t]*\1[ \t]*(?=\n)")
_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9]*(?:\s[^<>]*)?/?>")
_LIST = re.compile(r"\n[*#:;]+[ \t]*")
_RULE = re.compile(r"\n-{4,}[ \t]*(?=\n)")
_SWITCH = re.compile(r"__[A-Z]+__")
_SPACES = re.compile(r"[ \t\u00a0]{2,}|[\t\u00a0]")
_BLANKS = re.compile(r"\n\n\n+")
_TITLE_WS = re.compile(r"[\s_]+")


def normalize_title(title: str) -> str:
    """A page title as MediaWiki stores it: ``_`` -> space, runs of spaces collapsed, first
    letter upper-cased, section (``#...``) and surrounding space removed."""
    title = _TITLE_WS.sub(" ", title.split("#", 1)[0]).strip()
    return title[:1].upper() + title[1:] if title else ""


def _namespace(target: str) -> str | None:
    """The lower-cased namespace prefix of a link target, or None for a main-space title."""
    prefix, colon, _ = target.partition(":")
    if not colon:
        return None
    low = prefix.strip().lower().replace("_", " ")
    if low in NAMESPACE_NAMES:
        return low
    if re.fullmatch(r"[a-z]{2,3}(?:-[a-z]{2,8})*", prefix.strip()):  # interlanguage link
        return low
    return None


def _link_text(inner: str) -> str:
    """What a wikilink shows: the text after the first ``|``, else the target."""
    target, bar, text = inner.partition("|")
    if bar:
        return text
    return target.lstrip(":")


def _scan(text: str, keep_link: bool = True) -> str:
    """Drop templates and tables (nested), resolve wikilinks; one pass over bracket tokens.

    An unclosed template or table opener is literal text (as MediaWiki renders it): the scan
    restarts after it.
    """
    parts: list[str] = []
    for _ in range(64):
        done, restart = _scan_once(text, keep_link)
        parts.append(done)
        if restart is None:
            return "".join(parts)
        text = text[restart:]
    parts.append(text)
    return "".join(parts)


def _scan_once(text: str, keep_link: bool) -> tuple[str, int | None]:
    out: list[str] = []
    # stack entries: (kind, start in text, index in out where its content starts; -1: dropped)
    stack: list[tuple[str, int, int]] = []
    pos = 0
    drop = 0  # open template/table frames (their content is dropped)
    for m in _TOKENS.finditer(text):
        tok = m.group()
        start = m.start()
        if not drop:
            out.append(text[pos:start])
        pos = m.end()
        if tok[0] == "\n":  # a table opener/closer at a line start: the newline is text
            if not drop:
                out.append("\n")
            start = m.end() - 2
            tok = tok[-2:]
        if tok == "{{" or tok == "{|":
            stack.append((tok, start, len(out) if not drop else -1))
            drop += 1
        elif tok == "}}" or tok == "|}":
            kind = "{{" if tok == "}}" else "{|"
            k = len(stack) - 1
            while k >= 0 and stack[k][0] == "[[":
                k -= 1
            if k >= 0 and stack[k][0] == kind:
                del stack[k:]
                drop -= 1
            elif not drop:
                out.append(m.group())
        elif tok == "[[":
            stack.append(("[[", start, -1 if drop else len(out)))
        else:  # "]]"
            if not stack or stack[-1][0] != "[[":
                if not drop:
                    out.append("]]")
                continue
            _, _, at = stack.pop()
            if at < 0 or drop:
                continue
            inner = "".join(out[at:])
            del out[at:]
            target = inner.split("|", 1)[0]
            ns = None if target.startswith(":") else _namespace(target)
            if ns is not None and (ns in NON_TEXT_LINK_NS or ns not in NAMESPACE_NAMES):
                continue  # file/category/interlanguage link: not text
            out.append(_link_text(inner) if keep_link else "")
    if drop:
        _, start, at = next(s for s in stack if s[0] != "[[")
        del out[at:]
        out.append(text[start:start + 2])
        return "".join(out), start + 2
    out.append(text[pos:])
    return "".join(out), None


def clean_wikitext(text: str, *, headings: bool = True) -> str:
    """Plain text of a page's wikitext (see the module docstring for what is kept)."""
    text = "\n" + _COMMENT.sub("", text) + "\n"
    if "<" in text:
        text = _INVISIBLE_SELF.sub("", text)
        text = _INVISIBLE_PAIR.sub("", text)
    text = _scan(text)
    if "[" in text:
        text = _EXTERNAL.sub(r"\1", text)
    text = _QUOTES.sub("", text)
    text = _HEADING.sub("\n\\2" if headings else "\n", text)
    if "<" in text:
        text = _TAG.sub("", text)
    text = _LIST.sub("\n", text)
    text = _RULE.sub("\n", text)
    text = _SWITCH.sub("", text)
    if "&" in text:
        text = html.unescape(text)
    text = _SPACES.sub(" ", text).replace(" \n", "\n").replace("\n ", "\n")
    text = _BLANKS.sub("\n\n", text)
    return text.strip()


# ---------------------------------------------------------------------------------------------
# links

_LINK = re.compile(r"\[\[([^\[\]|]*)(?:\|[^\[\]]*)?\]\]")


def wikilinks(text: str) -> list[str]:
    """Main-namespace link targets of a page, normalised, in order, without duplicates.

    Links inside comments, refs and templates count only when they are plain ``[[...]]`` in
    the page body (templates are removed first, as for the text)."""
    text = "\n" + _COMMENT.sub("", text)
    if "<" in text:
        text = _INVISIBLE_SELF.sub("", text)
        text = _INVISIBLE_PAIR.sub("", text)
    body = _scan_templates_only(text)
    seen: dict[str, None] = {}
    for m in _LINK.finditer(body):
        target = m.group(1)
        if target.startswith(":"):
            target = target[1:]
        if _namespace(target) is not None:
            continue
        title = normalize_title(target)
        if title:
            seen.setdefault(title, None)
    return list(seen)


_TEMPLATE_TOKENS = re.compile(r"\{\{|\}\}|\n[ \t:]*\{\||\n[ \t]*\|\}")


def _scan_templates_only(text: str) -> str:
    """The text outside templates and tables (links left in place)."""
    out: list[str] = []
    depth, pos = 0, 0
    for m in _TEMPLATE_TOKENS.finditer(text):
        tok = m.group()[-2:]
        if tok in ("}}", "|}"):
            if depth:
                depth -= 1
                pos = m.end()
            continue
        if not depth:
            out.append(text[pos:m.start()])
        depth += 1
        pos = m.end()
    if not depth:
        out.append(text[pos:])
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# templates: membership and infobox fields

def _template_name(name: str) -> str:
    name = _TITLE_WS.sub(" ", name).strip()
    if name.lower().startswith("template:"):
        name = name[9:].strip()
    return name[:1].upper() + name[1:]


def find_template(text: str, name: str) -> str | None:
    """The body (between ``{{`` and ``}}``) of the first use of template ``name`` (first
    letter case-insensitive, ``_`` = space), or None."""
    want = _template_name(name)
    pattern = re.compile(r"\{\{\s*(?:[Tt]emplate\s*:\s*)?" + "[" + re.escape(want[:1].upper())
                         + re.escape(want[:1].lower()) + "]"
                         + r"[ _]+".join(re.escape(w) for w in want[1:].split(" "))
                         + r"\s*(?=[|}])")
    m = pattern.search(_COMMENT.sub("", text))
    if m is None:
        return None
    src = _COMMENT.sub("", text)
    depth, i = 0, m.start()
    while i < len(src):
        two = src[i:i + 2]
        if two == "{{":
            depth += 1
            i += 2
        elif two == "}}":
            depth -= 1
            i += 2
            if depth == 0:
                return src[m.start() + 2:i - 2]
        else:
            i += 1
    return None


def uses_template(text: str, name: str) -> bool:
    """True when the page transcludes template ``name``."""
    return find_template(text, name) is not None


def _split_top(body: str) -> list[str]:
    """Split a template body at ``|`` not nested in ``{{ }}`` or ``[[ ]]``."""
    parts, depth, start, i = [], 0, 0, 0
    n = len(body)
    while i < n:
        two = body[i:i + 2]
        if two in ("{{", "[["):
            depth += 1
            i += 2
            continue
        if two in ("}}", "]]"):
            depth = max(0, depth - 1)
            i += 2
            continue
        if body[i] == "|" and depth == 0:
            parts.append(body[start:i])
            start = i + 1
        i += 1
    parts.append(body[start:])
    return parts


_INNER_TEMPLATE = re.compile(r"\{\{([^{}]*)\}\}")


def _unwrap_templates(text: str) -> str:
    """Replace nested templates by their positional arguments (``{{Plainlist|* a * b}}`` ->
    ``* a * b``; ``{{Film date|1977|05|25}}`` -> ``1977, 05, 25``)."""
    def repl(m: re.Match[str]) -> str:
        args = _split_top(m.group(1))[1:]
        return ", ".join(a.strip() for a in args if "=" not in a.split("[[", 1)[0])

    for _ in range(10):
        new = _INNER_TEMPLATE.sub(repl, text)
        if new == text:
            break
        text = new
    return text


def template_fields(text: str, name: str) -> dict[str, str] | None:
    """The named fields of the first use of template ``name`` as plain text (links -> their
    text, nested templates -> their positional arguments, refs and comments removed); None
    when the page does not use it."""
    body = find_template(text, name)
    if body is None:
        return None
    body = _INVISIBLE_SELF.sub("", body)
    body = _INVISIBLE_PAIR.sub("", body)
    fields: dict[str, str] = {}
    for part in _split_top(body)[1:]:
        key, eq, value = part.partition("=")
        if not eq or not key.strip():
            continue
        value = clean_wikitext(_unwrap_templates(value).strip())
        value = "\n".join(line.strip() for line in value.splitlines() if line.strip())
        if value:
            fields[key.strip()] = value
    return fields


def word_counts(texts: Iterable[str]) -> dict[str, int]:
    """Counts of ``\\w+`` words (for quality measurements)."""
    counts: dict[str, int] = {}
    for t in texts:
        for w in re.findall(r"\w+", t):
            counts[w] = counts.get(w, 0) + 1
    return counts

"""The ``stackexchange`` connector: a site's Posts.xml -> questions (tags as labels) or
question / accepted-answer pairs.

``dlprep fetch stackexchange --site travel.stackexchange.com`` finds the site's ``.7z`` in an
Internet Archive item (``--item latest|stackexchange|stackexchange_YYYYMMDD``, ``--api-base``
for a mirror; :mod:`dlprep.sources.stackexchange`), downloads it verified against the item's
md5 and size (sha1 when there is no md5), resumable; ``--dump FILE.7z|Posts.xml|URL`` takes a
file instead. Posts.xml is streamed (:mod:`dlprep.formats.stackexchange`), bodies are turned
from HTML into text (:mod:`dlprep.text.html_text`).

Each question becomes one document, ``title + "\\n\\n" + body text``. Its label is its first
tag (in the order the post lists them) that is among the ``--top-tags K`` most frequent tags
of the questions read (``--top-tags 0``: its first tag); a question without such a tag is left
out and counted. ``--pairs`` keeps the questions whose accepted answer is in the dump and
writes the answers' text aligned with them (``answer_tokens``/``answer_offsets``, same rows;
docs/FORMAT.md). Per row: ``meta/id``, ``score``, ``title``, ``tags`` (space-separated),
``creation_date``, ``license`` (``ContentLicense``; empty in dumps before 2019), ``url``; with
``--pairs`` also ``answer_id`` and ``answer_score``.
"""

from __future__ import annotations

import logging
import struct
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from ..errors import DlprepError
from ..fetch.download import FileSpec, fetch_file, local_source
from ..fetch.verify import require_sha1
from ..formats.sevenzip import DECODERS
from ..formats.stackexchange import (
    ANSWER,
    QUESTION,
    Post,
    ReadReport,
    iter_posts,
    posts_chunks,
)
from ..sources.stackexchange import DEFAULT_API_BASE, LATEST, DumpLocator, check_item, check_site
from ..text.html_text import html_to_text
from .core import PrepareContext, file_sha256
from .params import Param
from .text import TEXT_PARAMS, write_text_dataset
from .text_pairs import write_pairs_dataset
from .wikipedia import local_sha256

log = logging.getLogger("dlprep")
BUILD_VERSION = "1"

PARAMS: tuple[Param, ...] = (
    Param("site", "str", None, "site domain, e.g. travel.stackexchange.com (or travel)"),
    Param("item", "str", LATEST, "Internet Archive item: latest (newest stackexchange_YYYYMMDD), "
                                 "stackexchange (legacy) or stackexchange_YYYYMMDD"),
    Param("api_base", "str", DEFAULT_API_BASE, "Internet Archive site or a mirror of its API"),
    Param("dump", "str", None, "a local .7z dump or Posts.xml (or a URL) instead of --site"),
    Param("decoder", "str", "auto", "7z decoder: auto (7z program, else libarchive, else "
                                    "py7zr), 7z, libarchive or py7zr", DECODERS),
    Param("pairs", "bool", False, "keep questions with an accepted answer and store the answer "
                                  "aligned (answer_tokens/answer_offsets)"),
    Param("top_tags", "int", 20, "label = the question's first tag among the K most frequent "
                                 "tags (0: its first tag); questions without one are left out"),
    Param("min_score", "int", None, "keep questions with at least this score"),
    Param("max_questions", "int", 0, "read only the first N questions of the dump (0: all)"),
) + TEXT_PARAMS

_Q = struct.Struct("<Q")


@dataclass(frozen=True)
class DumpInput:
    """What ``collect`` hands to ``build``: the dump file and the site it is from."""

    path: Path
    site: str
    decoder: str = "auto"


def _given(ctx: PrepareContext, value: str) -> Path:
    src = local_source(value)
    if src is not None:
        if not src.is_file():
            raise DlprepError(f"--dump: {value} does not exist")
        src = src.resolve()
        ctx.sources.append({"name": src.name, "url": src.as_uri(),
                            "sha256": local_sha256(src, ctx.raw_dir / "local-hashes")})
        return src
    name = Path(value.split("?")[0]).name or "Posts.7z"
    return ctx.fetch(FileSpec(name=name, urls=[value], checksum_optional=True), "given")


def _download(ctx: PrepareContext, site: str) -> Path:
    from ..fetch.api import ApiClient, HostPolicy

    o = ctx.options
    client = ApiClient("Internet Archive", o["api_base"], cache_dir=ctx.cache.api_dir(
        "stackexchange"), options=ctx.fetch_options, policy=HostPolicy(max_in_flight=2))
    dump = DumpLocator(client, o["api_base"]).dump_file(o["item"], site)
    ctx.inputs["item"] = dump.item
    spec = FileSpec(name=dump.name, urls=[dump.url], size=dump.size, md5=dump.md5,
                    checksum_optional=True)
    path = fetch_file(spec, ctx.raw_dir / dump.item, ctx.fetch_options)
    if dump.sha1 and not dump.md5:
        require_sha1(path, dump.sha1, dump.url, dump.name)
    ctx.sources.append({"name": f"{dump.item}/{dump.name}", "url": dump.url,
                        "sha256": file_sha256(path)})
    ctx.raw_files[path] = bool(dump.md5 or dump.sha1)
    return path


def collect(ctx: PrepareContext) -> DumpInput:
    o = ctx.options
    # how the .7z is decoded does not change the output: kept out of the config hash
    decoder = o.pop("decoder")
    check_item(o["item"])
    if o["top_tags"] < 0 or o["max_questions"] < 0:
        raise DlprepError("--top-tags and --max-questions must be 0 or more")
    if o["pairs"] and o["chunk_chars"]:
        raise DlprepError(f"dataset {ctx.name}: --chunk-chars cannot be used with --pairs "
                          f"(chunks would break the question/answer alignment)")
    if o["dump"]:
        site = check_site(o["site"]) if o["site"] else ""
        return DumpInput(_given(ctx, o["dump"]), site, decoder)
    if not o["site"]:
        raise DlprepError(f"dataset {ctx.name}: choose a site with --site "
                          f"travel.stackexchange.com (from the Internet Archive) or a file "
                          f"with --dump FILE.7z|Posts.xml")
    site = check_site(o["site"])
    ctx.inputs["site"] = site
    return DumpInput(_download(ctx, site), site, decoder)


@dataclass
class _Read:
    """What one pass over the dump kept: per question its spool position and fields."""

    pos: list[int] = field(default_factory=list)
    meta: dict[str, list] = field(default_factory=dict)
    tags: list[tuple[str, ...]] = field(default_factory=list)
    answer_pos: dict[int, int] = field(default_factory=dict)  # question row -> spool position
    skipped_score: int = 0


def _write(fh: BinaryIO, text: str) -> int:
    pos = fh.tell()
    data = text.encode("utf-8", "surrogatepass")
    fh.write(_Q.pack(len(data)))
    fh.write(data)
    return pos


def _read_at(fh: BinaryIO, pos: int) -> str:
    fh.seek(pos)
    (n,) = _Q.unpack(fh.read(8))
    return fh.read(n).decode("utf-8", "surrogatepass")


class _Answers:
    """Accepted answers matched to their questions in one pass, in any row order.

    An answer whose question is not read yet is spooled (dumps in Id order never need that,
    but the newer ones are not always sorted); one whose question was read is kept only if it
    is that question's accepted answer."""

    def __init__(self, fh: BinaryIO, got: _Read) -> None:
        self.fh, self.got = fh, got
        self.pending: dict[int, int] = {}  # accepted answer id -> question row
        self.seen: set[int] = set()  # question ids read
        self.early: dict[int, tuple[int, int]] = {}  # answer id -> (spool position, score)

    def question(self, post_id: int, accepted: int | None, row: int | None) -> None:
        self.seen.add(post_id)
        if accepted is None or row is None:
            return
        found = self.early.pop(accepted, None)
        if found is not None:
            self._take(row, accepted, *found)
        else:
            self.pending[accepted] = row

    def answer(self, post: Post) -> None:
        row = self.pending.pop(post.id, None)
        if row is not None:
            self._take(row, post.id, _write(self.fh, html_to_text(post.body)), post.score)
        elif post.parent_id is not None and post.parent_id not in self.seen:
            self.early[post.id] = (_write(self.fh, html_to_text(post.body)), post.score)

    def _take(self, row: int, answer_id: int, pos: int, score: int) -> None:
        self.got.answer_pos[row] = pos
        self.got.meta["answer_id"][row] = answer_id
        self.got.meta["answer_score"][row] = score


def _read_dump(ctx: PrepareContext, inp: DumpInput, qfile: BinaryIO, afile: BinaryIO,
               report: ReadReport) -> _Read:
    o = ctx.options
    pairs, limit, min_score = o["pairs"], o["max_questions"], o["min_score"]
    keys = ["id", "score", "title", "tags", "creation_date", "license", "url"]
    if pairs:
        keys += ["answer_id", "answer_score"]
    got = _Read(meta={k: [] for k in keys})
    meta = got.meta
    answers = _Answers(afile, got)
    base = f"https://{inp.site}/q/" if inp.site else ""
    types = frozenset({QUESTION, ANSWER} if pairs else {QUESTION})
    questions = 0
    chunks = posts_chunks(inp.path, decoder=inp.decoder)
    try:
        for post in iter_posts(chunks, inp.path, types=types, report=report):
            full = bool(limit) and questions >= limit
            if post.post_type == ANSWER:
                answers.answer(post)
                if full and not answers.pending:
                    break
                continue
            if full:
                if not pairs or not answers.pending:
                    break
                continue
            questions += 1
            if min_score is not None and post.score < min_score:
                got.skipped_score += 1
                if pairs:
                    answers.question(post.id, None, None)
                continue
            row = len(got.pos)
            got.pos.append(_write(qfile, f"{post.title}\n\n{html_to_text(post.body)}"))
            got.tags.append(post.tags)
            for k, v in (("id", post.id), ("score", post.score), ("title", post.title),
                         ("tags", " ".join(post.tags)), ("creation_date", post.creation_date),
                         ("license", post.license), ("url", f"{base}{post.id}" if base else "")):
                meta[k].append(v)
            if pairs:
                meta["answer_id"].append(-1)
                meta["answer_score"].append(0)
                answers.question(post.id, post.accepted_answer_id, row)
    finally:
        chunks.close()
    return got


def _labels(got: _Read, top: int) -> tuple[list[str | None], int]:
    """Each question's label (None: no tag among the top ``top``) and how many have none."""
    counts = Counter(t for tags in got.tags for t in dict.fromkeys(tags))  # ties: first seen
    keep = {t for t, _ in counts.most_common(top)} if top else set(counts)
    labels = [next((t for t in tags if t in keep), None) for tags in got.tags]
    return labels, sum(lab is None for lab in labels)


def build(ctx: PrepareContext, out: Path) -> None:
    o = ctx.options
    inp = ctx.collected_as(DumpInput)
    report = ReadReport()
    qpath, apath = out.with_name(out.name + ".questions"), out.with_name(out.name + ".answers")
    try:
        with open(qpath, "w+b") as qfile, open(apath, "w+b") as afile:
            got = _read_dump(ctx, inp, qfile, afile, report)
            labels, untagged = _labels(got, o["top_tags"])
            rows = [r for r, lab in enumerate(labels) if lab is not None and
                    (not o["pairs"] or r in got.answer_pos)]
            _log_counts(ctx, inp, report, got, untagged, len(rows))
            if not rows:
                raise DlprepError(f"dataset {ctx.name}: no question kept from {inp.path.name} "
                                  f"({_summary(report, got, untagged)})")
            meta = {k: [v[r] for r in rows] for k, v in got.meta.items() if k != "url" or
                    inp.site}
            chosen = [labels[r] for r in rows]

            def questions() -> Iterator[str]:
                for r in rows:
                    yield _read_at(qfile, got.pos[r])

            if o["pairs"]:
                def pairs() -> Iterator[tuple[str, str]]:
                    for r in rows:
                        yield _read_at(qfile, got.pos[r]), _read_at(afile, got.answer_pos[r])

                write_pairs_dataset(ctx, out, pairs, meta, labels=chosen)  # type: ignore[arg-type]
            else:
                write_text_dataset(ctx, out, questions, meta, labels=chosen)  # type: ignore[arg-type]
    finally:
        qpath.unlink(missing_ok=True)
        apath.unlink(missing_ok=True)


def _summary(report: ReadReport, got: _Read, untagged: int) -> str:
    parts = [f"{report.rows:,} rows", f"{report.questions:,} questions",
             f"{report.answers:,} answers"]
    if got.skipped_score:
        parts.append(f"{got.skipped_score:,} under --min-score")
    if untagged:
        parts.append(f"{untagged:,} without a top tag")
    if report.bad_rows:
        parts.append(f"{report.bad_rows:,} unreadable rows")
    return ", ".join(parts)


def _log_counts(ctx: PrepareContext, inp: DumpInput, report: ReadReport, got: _Read,
                untagged: int, kept: int) -> None:
    log.info("%s: %s; %d kept", inp.path.name, _summary(report, got, untagged), kept)
    if report.bad_rows:
        log.warning("%s: %d row(s) with a non-numeric field were skipped (%s)", inp.path.name,
                    report.bad_rows, report.example)
    if ctx.options["pairs"]:
        log.info("%d of %d questions have their accepted answer in the dump",
                 len(got.answer_pos), len(got.pos))

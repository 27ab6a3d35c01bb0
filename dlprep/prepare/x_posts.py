"""The ``x-posts`` builder: X posts -> a text dataset, optionally labelled by emoji.

Two ways in: ``dlprep fetch x --query Q [--max-posts N]`` (API v2 recent search,
:mod:`dlprep.sources.x`) and ``dlprep import-posts FILE`` (JSONL/JSON/CSV, the recipe then has
the file; :mod:`dlprep.formats.posts`). Posts with the same id are kept once; ``--lang``
keeps one language. With ``--emoji-labels`` each post becomes (its text without emoji, its
most frequent emoji) (:mod:`dlprep.text.emoji_labels`): posts without emoji, or with nothing
but emoji, are dropped; labels seen in fewer than ``--min-count`` posts are dropped or, with
``--rare other``, become ``other``. Otherwise ``--label-field F`` labels each post by a field
(e.g. ``lang``) or there are no labels. Then the shared text pipeline
(:func:`.text.write_text_dataset`). ``meta/id`` (post ids, for re-hydration), and
``meta/author_id``, ``meta/author``, ``meta/created_at``, ``meta/lang`` where the posts have
them; the root attribute ``posts_dropped`` (JSON ``{reason: count}``) says what was left out.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import DlprepError
from ..formats.posts import FORMATS, Post, read_posts
from ..formats.text_table import check_encoding
from ..redact import redact_url
from ..sources.x import DEFAULT_API_BASE, DEFAULT_FIELDS
from ..text.emoji_labels import RARE_CHOICES, fold_rare, split_emoji
from .core import PrepareContext
from .params import Param
from .text import TEXT_PARAMS, write_text_dataset

log = logging.getLogger("dlprep")

PARAMS: tuple[Param, ...] = (
    Param("query", "str", None, "fetch x: recent-search query in X search syntax (at most "
                                "512 characters), e.g. 'cats lang:en -is:retweet'"),
    Param("max_posts", "int", 100, "fetch x: stop after this many posts"),
    Param("api_base", "str", DEFAULT_API_BASE, "fetch x: X API v2 base URL (or a mirror)"),
    Param("tweet_fields", "list", list(DEFAULT_FIELDS), "fetch x: post fields to request "
                                                        "(tweet.fields)"),
    Param("format", "str", "auto", "import-posts: file format (auto: from the suffix)",
          FORMATS),
    Param("text_field", "str", "text", "import-posts: JSON field or CSV column of the text"),
    Param("encoding", "str", "utf-8", "import-posts: text encoding of the file"),
    Param("lang", "str", None, "keep only posts whose lang field is this (e.g. en)"),
    Param("label_field", "str", None, "label each post by this field (e.g. lang); not with "
                                      "--emoji-labels"),
    Param("emoji_labels", "bool", False, "label = the post's most frequent emoji, removed "
                                         "from the text; posts without emoji are dropped"),
    Param("min_count", "int", 1, "emoji labels seen in fewer posts than this are rare"),
    Param("rare", "str", "drop", "what rare emoji labels become: drop (the posts) or other",
          RARE_CHOICES),
    Param("keep_skin_tones", "bool", False, "keep skin tones apart (a toned thumbs-up is not "
                                            "the plain one)"),
) + TEXT_PARAMS

META_FIELDS = ("id", "author_id", "author", "created_at", "lang")


@dataclass(frozen=True)
class Posts:
    """What ``collect`` hands to ``build`` on the API path: the posts found."""

    posts: list[Post]


def _check_options(ctx: PrepareContext) -> None:
    o = ctx.options
    if o["emoji_labels"] and o["label_field"]:
        raise DlprepError("x: --emoji-labels and --label-field both set the labels; give one")
    if o["min_count"] < 0:
        raise DlprepError(f"x: --min-count must be >= 0, got {o['min_count']}")
    if o["emoji_labels"]:
        from ..errors import require

        require("emoji", "api")
    check_encoding(o["encoding"])


def collect(ctx: PrepareContext) -> Posts | None:
    """Import: copy the file into the cache (read in ``build``). API: run the search (or
    replay it from the cache) and record a digest of what it returned."""
    _check_options(ctx)
    if ctx.recipe.files:
        spec = ctx.recipe.files[0]
        ctx.files[spec.name] = ctx.fetch(spec)
        return None
    from ..sources.x import search_recent

    o = ctx.options
    posts = list(search_recent(o["query"], o["max_posts"], cache_dir=ctx.cache.api_dir("x"),
                               options=ctx.fetch_options, api_base=o["api_base"],
                               tweet_fields=o["tweet_fields"]))
    if not posts:
        raise DlprepError(f"x: the search {o['query']!r} found no posts (recent search covers "
                          f"the last 7 days)")
    listing = hashlib.sha256("\n".join(f"{p.id}\t{p.text}" for p in posts).encode()
                             ).hexdigest()
    ctx.inputs["posts"] = listing
    ctx.sources.append({"name": "x-recent-search", "url": redact_url(o["api_base"]),
                        "sha256": listing})
    log.info("x: %d posts for %r", len(posts), o["query"])
    return Posts(posts)


def _posts(ctx: PrepareContext) -> list[Post]:
    if isinstance(ctx.collected, Posts):
        return ctx.collected.posts
    o = ctx.options
    spec = ctx.recipe.files[0]
    # import-posts recipes point ``path`` at the user's file: errors name it, not the copy
    shown = ctx.recipe.path if ctx.recipe.path.suffix != ".toml" else None
    posts = read_posts(ctx.files[spec.name], fmt=o["format"], text_field=o["text_field"],
                       encoding=o["encoding"], shown_as=shown)
    seen: set[str] = set()
    unique = []
    for post in posts:
        if post.id and post.id in seen:
            continue
        seen.add(post.id)
        unique.append(post)
    if not unique:
        raise DlprepError(f"{shown or spec.name}: no posts in the file")
    return unique


@dataclass
class Selection:
    """The posts kept, their texts and labels (None: unlabelled), and counts of the rest."""

    posts: list[Post]
    texts: list[str]
    labels: list[str] | None
    dropped: dict[str, int]


def select(posts: Sequence[Post], o: dict) -> Selection:  # type: ignore[type-arg]
    """Filter and label ``posts`` by the options ``o`` (see the module docstring)."""
    dropped: dict[str, int] = {}

    def drop(reason: str) -> None:
        dropped[reason] = dropped.get(reason, 0) + 1

    kept: list[Post] = []
    texts: list[str] = []
    labels: list[str] = []
    for post in posts:
        if o["lang"] and post.fields.get("lang") != o["lang"]:
            drop("other_lang")
            continue
        text = post.text
        if o["emoji_labels"]:
            split = split_emoji(text, keep_skin_tones=o["keep_skin_tones"])
            label = split.label
            if label is None:
                drop("no_emoji")
                continue
            if not split.text.strip():
                drop("emoji_only")
                continue
            text = split.text
        elif o["label_field"]:
            label = post.fields.get(o["label_field"], "")
            if not label:
                drop(f"no_{o['label_field']}")
                continue
        else:
            label = ""
        kept.append(post)
        texts.append(text)
        labels.append(label)
    if o["emoji_labels"] and o["min_count"] > 1:
        folded, changed = fold_rare(labels, o["min_count"], o["rare"])
        if o["rare"] == "drop":
            if changed:
                dropped["rare"] = changed
            keep = [i for i, label in enumerate(folded) if label is not None]
            kept, texts = [kept[i] for i in keep], [texts[i] for i in keep]
            labels = [labels[i] for i in keep]
        else:
            if changed:
                dropped["folded_into_other"] = changed  # kept, with the label "other"
            labels = [label or "" for label in folded]
    labelled = bool(o["emoji_labels"] or o["label_field"])
    return Selection(kept, texts, labels if labelled else None, dropped)


def build(ctx: PrepareContext, out: Path) -> None:
    o = ctx.options
    posts = _posts(ctx)
    sel = select(posts, o)
    if sel.dropped:
        log.warning("%s: %d of %d posts kept; left out: %s", ctx.name, len(sel.posts), len(posts),
                    ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in sel.dropped.items()))
    if not sel.posts:
        why = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in sel.dropped.items())
        raise DlprepError(f"dataset {ctx.name}: no post left of {len(posts)} ({why})")
    meta = {key: [p.fields.get(key, "") for p in sel.posts] for key in META_FIELDS
            if any(key in p.fields for p in sel.posts)}
    write_text_dataset(ctx, out, sel.texts, meta, labels=sel.labels,
                       classes=ctx.recipe.classes or None,
                       extra_attrs={"posts_dropped": json.dumps(sel.dropped, sort_keys=True)})

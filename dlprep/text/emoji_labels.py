"""Emoji labels for posts (the cookbook's emoji-suggestion task, 07.2).

:func:`emoji_label` turns a text into (the text without its emoji, its most frequent emoji).
Emoji are found with the ``emoji`` library (extra ``api``), so a ZWJ sequence (👨‍👩‍👧, 🏳️‍🌈,
also ones outside the RGI list), a flag (🇫🇷), a keycap (1️⃣) or an emoji with a skin-tone
modifier (👍🏽) is one emoji, never its parts. Labels are canonical: the fully-qualified form
(``❤`` and ``❤️`` are one label); skin tones are folded into the base emoji (👍🏽 counts as 👍)
unless ``keep_skin_tones``. Ties between equally frequent emoji go to the one that appears
first. Not emoji here: the bare text symbols ``©``, ``®``, ``™`` (they stay in the text), and
lone components (a skin-tone or hair swatch on its own: removed, never a label).

:func:`fold_rare` applies a minimum count per label: rarer labels become ``other`` or their
posts are dropped.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType

from ..errors import DlprepError, require

#: what posts whose emoji are rare become with ``rare="other"``
OTHER = "other"
RARE_CHOICES = ("drop", "other")
#: characters the emoji library lists that are nearly always typed as text, not as emoji
TEXT_SYMBOLS = frozenset("©®™")
_TONES = re.compile("[\U0001F3FB-\U0001F3FF]")
_SPACES = re.compile(r"[^\S\n]{2,}")
_COMPONENT = 1  # emoji.STATUS["component"]


def _emoji() -> ModuleType:
    return require("emoji", "api")  # type: ignore[return-value]


@dataclass(frozen=True)
class EmojiPost:
    """A text split into its words and its emoji: ``text`` without the emoji, ``emoji`` the
    canonical emoji in order of appearance (repeats kept)."""

    text: str
    emoji: tuple[str, ...]

    @property
    def label(self) -> str | None:
        """The most frequent emoji (the first to appear among equals), or None."""
        if not self.emoji:
            return None
        counts = Counter(self.emoji)
        best = max(counts.values())
        return next(e for e in self.emoji if counts[e] == best)


def canonical_emoji(chars: str, *, keep_skin_tones: bool = False) -> str | None:
    """The fully-qualified form of one emoji (``❤`` -> ``❤️``), skin tones folded unless
    ``keep_skin_tones``; None for a lone component (a skin-tone swatch)."""
    emoji = _emoji()
    s = chars if keep_skin_tones else _TONES.sub("", chars)
    if not s:
        return None
    data = emoji.EMOJI_DATA.get(s)
    if data is not None and data.get("status") == _COMPONENT:
        return None
    if data is None and "\u200d" in s:  # a ZWJ sequence outside the RGI list: each part
        parts = [canonical_emoji(p, keep_skin_tones=True) or p for p in s.split("\u200d")]
        return "\u200d".join(parts)
    return emoji.emojize(emoji.demojize(s), language="en") if data is not None else s


def split_emoji(text: str, *, keep_skin_tones: bool = False) -> EmojiPost:
    """``text`` without its emoji (runs of spaces left behind collapsed, ends stripped) and
    the canonical emoji it held, in order."""
    emoji = _emoji()
    pieces: list[str] = []
    found: list[str] = []
    pos = 0
    for token in emoji.analyze(text, join_emoji=True):
        match = token.value
        if match.emoji in TEXT_SYMBOLS:
            continue  # ©/®/™ without a variation selector: text, left in place
        pieces.append(text[pos:match.start])
        pos = match.end
        label = canonical_emoji(match.emoji, keep_skin_tones=keep_skin_tones)
        if label is not None:
            found.append(label)
    pieces.append(text[pos:])
    stripped = _SPACES.sub(" ", "".join(pieces)).strip() if found or pos else text
    return EmojiPost(stripped, tuple(found))


def emoji_label(text: str, *, keep_skin_tones: bool = False) -> tuple[str, str | None]:
    """(``text`` without emoji, its most frequent emoji or None when it has none)."""
    post = split_emoji(text, keep_skin_tones=keep_skin_tones)
    return post.text, post.label


def fold_rare(labels: Sequence[str], min_count: int, rare: str = "drop"
              ) -> tuple[list[str | None], int]:
    """Labels seen in fewer than ``min_count`` posts become ``other`` (``rare="other"``) or
    None (``rare="drop"``: the caller drops those posts). Returns (new labels, posts changed).
    """
    if rare not in RARE_CHOICES:
        raise DlprepError(f"--rare: {rare!r} is not one of {', '.join(RARE_CHOICES)}")
    if min_count < 0:
        raise DlprepError(f"--min-count must be >= 0, got {min_count}")
    counts = Counter(labels)
    replacement = OTHER if rare == "other" else None
    out: list[str | None] = [label if counts[label] >= min_count else replacement
                             for label in labels]
    changed = sum(1 for a, b in zip(labels, out, strict=True) if a != b)
    return out, changed

"""Tokenizers for text datasets: ``char``, ``word`` and byte-level ``bpe``.

Ids 0..3 are the special tokens ``<pad>``, ``<unk>``, ``<bos>``, ``<eos>`` (:data:`SPECIALS`,
defined here once) in every vocabulary. A tokenizer is saved as its ``vocab`` (id -> string) and
a JSON ``config``; :func:`from_prepared` rebuilds it from those two, so ``decode(encode(text))``
gives ``text`` back (exactly, unless the tokenizer lowercases or the text has tokens that are
not in the vocabulary). ``bpe`` needs the optional ``tokenizers`` package (extra ``text``).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import numpy as np

from ..errors import DlprepError
from .word_spans import SPACE, code_points, span_hashes, string_hashes, word_spans

SPECIALS: tuple[str, ...] = ("<pad>", "<unk>", "<bos>", "<eos>")
PAD, UNK, BOS, EOS = range(4)
KINDS = ("char", "word", "bpe")
UNK_CHAR = "\ufffd"  # what an unknown id decodes to in char vocabularies
DEFAULT_BPE_VOCAB = 8000

# Words (letters/digits/underscore in any script, with inner apostrophes), single other
# symbols, and whitespace runs: the three together cover every character, so joining the
# tokens gives the text back. word_spans.py computes the same tokens without regex.
_WORD_KEEP_SPACE = re.compile(r"\w+(?:['\u2019]\w+)*|[^\w\s]|\s+")
_WORD_DROP_SPACE = re.compile(r"\w+(?:['\u2019]\w+)*|[^\w\s]")


class TextTokenizer(Protocol):
    """What every tokenizer offers."""

    vocab: list[str]

    def encode(self, text: str) -> list[int]: ...
    def encode_array(self, text: str) -> np.ndarray: ...
    def decode(self, ids: Iterable[int]) -> str: ...
    @property
    def config(self) -> dict[str, Any]: ...


def _check_specials(vocab: Sequence[str]) -> None:
    if tuple(vocab[:len(SPECIALS)]) != SPECIALS:
        raise DlprepError(f"vocab must start with the special tokens {', '.join(SPECIALS)}; got "
                          f"{list(vocab[:len(SPECIALS)])}")


def _ranked(counts: Counter[str], min_freq: int, max_vocab: int) -> list[str]:
    """Tokens with count >= min_freq, most frequent first (ties by string), at most max_vocab
    including the specials (0 = no cap)."""
    items = sorted(((t, c) for t, c in counts.items() if c >= min_freq and t not in SPECIALS),
                   key=lambda tc: (-tc[1], tc[0]))
    if max_vocab > 0:
        items = items[:max(0, max_vocab - len(SPECIALS))]
    return [t for t, _ in items]


class CharTokenizer:
    """One id per Unicode code point; ids 4.. are the characters sorted by code point."""

    kind = "char"

    def __init__(self, vocab: Sequence[str], *, lowercase: bool = False) -> None:
        vocab = [v.decode() if isinstance(v, bytes) else str(v) for v in vocab]
        _check_specials(vocab)
        chars = vocab[len(SPECIALS):]
        if any(len(c) != 1 for c in chars):
            raise DlprepError("char vocab entries after the specials must be single characters")
        self.vocab = vocab
        self.lowercase = lowercase
        cps = np.array([ord(c) for c in chars], dtype=np.int64)
        size = int(cps.max()) + 2 if len(cps) else 1
        self._lut = np.full(size, UNK, dtype=np.int32)  # last slot: code points above the max
        self._lut[cps] = np.arange(len(SPECIALS), len(vocab), dtype=np.int32)
        self._decode = np.array(vocab, dtype=object)
        self._decode[:len(SPECIALS)] = ["", UNK_CHAR, "", ""]

    @classmethod
    def fit(cls, texts: Iterable[str], *, lowercase: bool = False, min_freq: int = 1,
            max_vocab: int = 0) -> CharTokenizer:
        """Vocabulary of the characters in ``texts`` seen at least ``min_freq`` times."""
        return cls.from_counts(cls.count(texts, lowercase=lowercase), lowercase=lowercase,
                               min_freq=min_freq, max_vocab=max_vocab)

    @staticmethod
    def count(texts: Iterable[str], *, lowercase: bool = False) -> Counter[str]:
        """Character counts of ``texts`` (sum those of several shards, then
        :meth:`from_counts`: the same vocabulary as one :meth:`fit` over all of them)."""
        counts: Counter[int] = Counter()
        for text in texts:
            if lowercase:
                text = text.lower()
            cps, n = np.unique(code_points(text), return_counts=True)
            counts.update(dict(zip(cps.tolist(), n.tolist(), strict=True)))
        return Counter({chr(c): n for c, n in counts.items()})

    @classmethod
    def from_counts(cls, counts: Counter[str], *, lowercase: bool = False, min_freq: int = 1,
                    max_vocab: int = 0) -> CharTokenizer:
        ranked = _ranked(counts, min_freq, max_vocab)
        return cls([*SPECIALS, *sorted(ranked)], lowercase=lowercase)

    def encode_array(self, text: str) -> np.ndarray:
        """int32 ids of ``text``'s characters (unknown characters -> ``<unk>``)."""
        if self.lowercase:
            text = text.lower()
        cps = code_points(text)
        return self._lut[np.minimum(cps, len(self._lut) - 1)]

    def encode(self, text: str) -> list[int]:
        return self.encode_array(text).tolist()

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``; ``<pad>``/``<bos>``/``<eos>`` are skipped, ``<unk>`` gives U+FFFD."""
        arr = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype=np.int64)
        return "".join(self._decode[arr].tolist())

    @property
    def config(self) -> dict[str, Any]:
        return {"type": "char", "specials": list(SPECIALS), "lowercase": self.lowercase,
                "unk_decodes_to": UNK_CHAR}


class WordTokenizer:
    """Unicode-aware words, single symbols and (with ``keep_whitespace``) whitespace runs.

    With whitespace kept, ``decode`` joins tokens as they are and round-trips the text; without,
    tokens are joined with single spaces. Unknown ids decode to ``<unk>``. Encoding is
    vectorised (:mod:`dlprep.text.word_spans`); :meth:`tokens` gives the same tokens as strings.
    """

    kind = "word"

    def __init__(self, vocab: Sequence[str], *, lowercase: bool = False,
                 keep_whitespace: bool = True) -> None:
        vocab = [v.decode() if isinstance(v, bytes) else str(v) for v in vocab]
        _check_specials(vocab)
        self.vocab = vocab
        self.lowercase = lowercase
        self.keep_whitespace = keep_whitespace
        self._pattern = _WORD_KEEP_SPACE if keep_whitespace else _WORD_DROP_SPACE
        self._decode = list(vocab)
        self._decode[PAD] = self._decode[BOS] = self._decode[EOS] = ""
        hashes, lengths = string_hashes(vocab[len(SPECIALS):])
        order = np.argsort(hashes, kind="stable")
        self._hashes, self._lengths = hashes[order], lengths[order]
        self._ids = (order + len(SPECIALS)).astype(np.int32)

    def tokens(self, text: str) -> list[str]:
        return self._pattern.findall(text.lower() if self.lowercase else text)

    @staticmethod
    def _spans(text: str, keep_whitespace: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cps = code_points(text)
        starts, ends, kinds = word_spans(cps)
        if not keep_whitespace:
            keep = kinds != SPACE
            starts, ends = starts[keep], ends[keep]
        return span_hashes(cps, starts, ends), starts, ends

    @classmethod
    def fit(cls, texts: Iterable[str], *, lowercase: bool = False, min_freq: int = 1,
            max_vocab: int = 0, keep_whitespace: bool = True) -> WordTokenizer:
        """Vocabulary of the ``max_vocab`` most frequent tokens seen ``min_freq`` times."""
        return cls.from_counts(cls.count(texts, lowercase=lowercase,
                                         keep_whitespace=keep_whitespace),
                               lowercase=lowercase, min_freq=min_freq, max_vocab=max_vocab,
                               keep_whitespace=keep_whitespace)

    @classmethod
    def count(cls, texts: Iterable[str], *, lowercase: bool = False,
              keep_whitespace: bool = True) -> Counter[str]:
        """Token counts of ``texts`` (sum those of several shards, then :meth:`from_counts`:
        the same vocabulary as one :meth:`fit` over all of them)."""
        counts: Counter[int] = Counter()
        strings: dict[int, str] = {}
        for text in texts:
            if lowercase:
                text = text.lower()
            hashes, starts, ends = cls._spans(text, keep_whitespace)
            uniq, first, n = np.unique(hashes, return_index=True, return_counts=True)
            for h, i in zip(uniq.tolist(), first.tolist(), strict=True):
                if h not in strings:
                    strings[h] = text[starts[i]:ends[i]]
            counts.update(dict(zip(uniq.tolist(), n.tolist(), strict=True)))
        return Counter({strings[h]: c for h, c in counts.items()})

    @classmethod
    def from_counts(cls, counts: Counter[str], *, lowercase: bool = False, min_freq: int = 1,
                    max_vocab: int = 0, keep_whitespace: bool = True) -> WordTokenizer:
        return cls([*SPECIALS, *_ranked(counts, min_freq, max_vocab)], lowercase=lowercase,
                   keep_whitespace=keep_whitespace)

    def encode_array(self, text: str) -> np.ndarray:
        """int32 ids of ``text``'s tokens (unknown tokens -> ``<unk>``)."""
        if self.lowercase:
            text = text.lower()
        hashes, starts, ends = self._spans(text, self.keep_whitespace)
        if not len(self._hashes):
            return np.full(len(hashes), UNK, np.int32)
        pos = np.minimum(np.searchsorted(self._hashes, hashes), len(self._hashes) - 1)
        found = (self._hashes[pos] == hashes) & (self._lengths[pos] == ends - starts)
        return np.where(found, self._ids[pos], UNK).astype(np.int32)

    def encode(self, text: str) -> list[int]:
        return self.encode_array(text).tolist()

    def decode(self, ids: Iterable[int]) -> str:
        parts = [self._decode[int(i)] for i in ids]
        if self.keep_whitespace:
            return "".join(parts)
        return " ".join(p for p in parts if p)

    @property
    def config(self) -> dict[str, Any]:
        return {"type": "word", "specials": list(SPECIALS), "lowercase": self.lowercase,
                "keep_whitespace": self.keep_whitespace, "pattern": self._pattern.pattern}


def _hf():  # type: ignore[no-untyped-def]
    from ..errors import require

    return require("tokenizers", "text")


class BPETokenizer:
    """Byte-level BPE (HF ``tokenizers``): every byte is in the alphabet, so there is no
    ``<unk>`` and ``decode(encode(text)) == text`` (modulo ``lowercase``)."""

    kind = "bpe"

    def __init__(self, hf_tokenizer: Any, *, lowercase: bool = False) -> None:
        self._tok = hf_tokenizer
        self.lowercase = lowercase
        self.vocab = [hf_tokenizer.id_to_token(i) for i in range(hf_tokenizer.get_vocab_size())]
        _check_specials(self.vocab)

    @classmethod
    def fit(cls, texts: Iterable[str], *, lowercase: bool = False, min_freq: int = 2,
            max_vocab: int = 0) -> BPETokenizer:
        """Train on ``texts`` up to ``max_vocab`` tokens (0: 8,000) of frequency >= min_freq."""
        hf = _hf()
        tok = hf.Tokenizer(hf.models.BPE())
        tok.pre_tokenizer = hf.pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = hf.decoders.ByteLevel()
        trainer = hf.trainers.BpeTrainer(
            vocab_size=max_vocab or DEFAULT_BPE_VOCAB, min_frequency=max(1, min_freq),
            special_tokens=list(SPECIALS), show_progress=False,
            initial_alphabet=hf.pre_tokenizers.ByteLevel.alphabet())
        tok.train_from_iterator((t.lower() if lowercase else t for t in texts), trainer=trainer)
        return cls(tok, lowercase=lowercase)

    @classmethod
    def from_json(cls, text: str, *, lowercase: bool = False) -> BPETokenizer:
        return cls(_hf().Tokenizer.from_str(text), lowercase=lowercase)

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text.lower() if self.lowercase else text).ids

    def encode_array(self, text: str) -> np.ndarray:
        return np.asarray(self.encode(text), dtype=np.int32)

    def decode(self, ids: Iterable[int]) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=True)

    @property
    def config(self) -> dict[str, Any]:
        return {"type": "bpe", "specials": list(SPECIALS), "lowercase": self.lowercase,
                "library": "tokenizers", "hf_tokenizer": self._tok.to_str()}


def fit_tokenizer(kind: str, texts: Iterable[str], *, lowercase: bool = False,
                  min_freq: int = 1, max_vocab: int = 0,
                  keep_whitespace: bool = True) -> TextTokenizer:
    """Build a ``char``/``word``/``bpe`` tokenizer from (training) ``texts`` (read once)."""
    if kind == "char":
        return CharTokenizer.fit(texts, lowercase=lowercase, min_freq=min_freq,
                                 max_vocab=max_vocab)
    if kind == "word":
        return WordTokenizer.fit(texts, lowercase=lowercase, min_freq=min_freq,
                                 max_vocab=max_vocab, keep_whitespace=keep_whitespace)
    if kind == "bpe":
        return BPETokenizer.fit(texts, lowercase=lowercase, min_freq=min_freq,
                                max_vocab=max_vocab)
    raise DlprepError(f"--tokenizer: {kind!r} is not one of {', '.join(KINDS)}")


def from_prepared(vocab: Sequence[str], config: dict[str, Any] | str) -> TextTokenizer:
    """Rebuild the tokenizer of a prepared file from its ``vocab`` dataset and ``tokenizer``
    attribute (a dict or its JSON); ``.encode(text) -> list[int]``, ``.decode(ids) -> str``."""
    if isinstance(config, (str, bytes)):
        config = json.loads(config)
    kind = config.get("type")
    lowercase = bool(config.get("lowercase", False))
    if kind == "char":
        return CharTokenizer(vocab, lowercase=lowercase)
    if kind == "word":
        return WordTokenizer(vocab, lowercase=lowercase,
                             keep_whitespace=bool(config.get("keep_whitespace", True)))
    if kind == "bpe":
        if "hf_tokenizer" not in config:
            raise DlprepError("tokenizer config of type 'bpe' lacks 'hf_tokenizer'")
        return BPETokenizer.from_json(config["hf_tokenizer"], lowercase=lowercase)
    raise DlprepError(f"unknown tokenizer type {kind!r} (known: {', '.join(KINDS)})")

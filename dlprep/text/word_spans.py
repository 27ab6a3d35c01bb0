"""Vectorised word segmentation: the spans and 64-bit hashes of the word tokenizer's tokens.

The tokens are exactly those of the regex ``\\w+(?:['’]\\w+)*|[^\\w\\s]|\\s+``: runs of word
characters (``str.isalnum()`` or ``_``, as Python's ``\\w``) joined by single inner apostrophes,
single other symbols, and whitespace runs (``str.isspace()``). Working on the UTF-32 code points
with NumPy, and looking tokens up by a polynomial hash mod 2**64 (checked together with the
length), avoids creating one Python string per token: word tokenization runs at tens of MB/s.
"""

from __future__ import annotations

import numpy as np

WORD, SPACE, OTHER = 1, 2, 3
_BMP = 0x10000
_P = 0x100000001B3  # odd, so invertible mod 2**64
_P_INV = pow(_P, -1, 1 << 64)
_BLOCK = 1 << 18  # code points per hashing block (bounds the temporary arrays)
_APOSTROPHES = (ord("'"), 0x2019)
_bmp_classes: np.ndarray | None = None
_powers: tuple[np.ndarray, np.ndarray] | None = None


def _power_tables(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``P**k`` and ``P**-k`` mod 2**64 for ``k < n`` (the first 2 blocks' worth are cached)."""
    global _powers
    if _powers is not None and len(_powers[0]) >= n:
        return _powers[0][:n], _powers[1][:n]
    size = max(n, 2 * _BLOCK)
    tables = []
    for base in (_P, _P_INV):
        arr = np.full(size, base, np.uint64)
        arr[0] = 1
        with np.errstate(over="ignore"):
            tables.append(np.cumprod(arr, dtype=np.uint64))
    _powers = (tables[0], tables[1])
    return _powers[0][:n], _powers[1][:n]


def _char_class(c: str) -> int:
    return WORD if c.isalnum() or c == "_" else SPACE if c.isspace() else OTHER


def _classes_for(cps: np.ndarray) -> np.ndarray:
    """WORD/SPACE/OTHER per code point (a lookup table for the BMP, computed once)."""
    global _bmp_classes
    if _bmp_classes is None:
        _bmp_classes = np.array([_char_class(chr(c)) for c in range(_BMP)], dtype=np.uint8)
    cls = _bmp_classes[np.minimum(cps, _BMP - 1)]
    high = np.flatnonzero(cps >= _BMP)
    if len(high):
        uniq, inv = np.unique(cps[high], return_inverse=True)
        cls[high] = np.array([_char_class(chr(int(c))) for c in uniq], np.uint8)[inv]
    return cls


def code_points(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")


def word_spans(cps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(starts, ends, kinds)`` of the tokens of code points ``cps`` (int64, int64, uint8)."""
    n = len(cps)
    if n == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0, np.uint8)
    cls = _classes_for(cps)
    # an apostrophe between two word characters is part of the word
    apo = (cps == _APOSTROPHES[0]) | (cps == _APOSTROPHES[1])
    apo[0] = apo[-1] = False
    inner = np.flatnonzero(apo)
    if len(inner):
        inner = inner[(cls[inner - 1] == WORD) & (cls[inner + 1] == WORD)]
        cls[inner] = WORD
    new = np.ones(n, bool)
    new[1:] = (cls[1:] != cls[:-1]) | (cls[1:] == OTHER)
    starts = np.flatnonzero(new)
    ends = np.append(starts[1:], n)
    return starts.astype(np.int64), ends.astype(np.int64), cls[starts]


def span_hashes(cps: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """uint64 hash of each span: ``sum(cp[a + k] * P**k) mod 2**64``."""
    out = np.empty(len(starts), np.uint64)
    if not len(starts):
        return out
    # blocks cut at token starts, so every span lies inside one block
    cuts = np.searchsorted(starts, np.arange(0, len(cps), _BLOCK), side="left")
    cuts = np.unique(np.append(cuts, len(starts)))
    with np.errstate(over="ignore"):
        for lo_tok, hi_tok in zip(cuts[:-1], cuts[1:], strict=True):
            if lo_tok == hi_tok:
                continue
            base = int(starts[lo_tok])
            stop = int(ends[hi_tok - 1])
            seg = cps[base:stop].astype(np.uint64)
            powers, inv = _power_tables(len(seg))
            prefix = np.zeros(len(seg) + 1, np.uint64)
            np.cumsum(seg * powers, dtype=np.uint64, out=prefix[1:])
            a = starts[lo_tok:hi_tok] - base
            b = ends[lo_tok:hi_tok] - base
            out[lo_tok:hi_tok] = (prefix[b] - prefix[a]) * inv[a]
    return out


def string_hashes(tokens: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(hashes, lengths)`` of whole strings, as :func:`span_hashes` computes them."""
    if not tokens:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    lengths = np.array([len(t) for t in tokens], np.int64)
    ends = np.cumsum(lengths)
    starts = ends - lengths
    return span_hashes(code_points("".join(tokens)), starts, ends), lengths

"""Near-duplicate pages: MinHash signatures over word 5-grams + LSH (datasketch)."""

from __future__ import annotations

import re
from collections.abc import Sequence

_WORD = re.compile(r"\w+", re.UNICODE)
NUM_PERM = 128
SHINGLE = 5


def _shingles(text: str) -> list[bytes]:
    words = _WORD.findall(text.lower())
    if len(words) < SHINGLE:
        return [" ".join(words).encode("utf-8")]
    return [" ".join(words[i:i + SHINGLE]).encode("utf-8")
            for i in range(len(words) - SHINGLE + 1)]


def near_duplicates(texts: Sequence[str], threshold: float = 0.8, seed: int = 1) -> set[int]:
    """Indices of texts whose estimated Jaccard similarity (word 5-gram sets) with an earlier
    text is at least ``threshold``; the first of each group is kept."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    drop: set[int] = set()
    for i, text in enumerate(texts):
        m = MinHash(num_perm=NUM_PERM, seed=seed)
        m.update_batch(_shingles(text))
        if lsh.query(m):
            drop.add(i)
            continue
        lsh.insert(str(i), m)
    return drop

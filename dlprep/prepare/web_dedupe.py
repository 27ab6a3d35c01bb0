"""Near-duplicate pages: MinHash signatures over word 5-grams + LSH (datasketch)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import numpy as np

_WORD = re.compile(r"\w+", re.UNICODE)
NUM_PERM = 128
SHINGLE = 5


def _shingles(text: str) -> list[bytes]:
    words = _WORD.findall(text.lower())
    if len(words) < SHINGLE:
        return [" ".join(words).encode("utf-8")]
    return [" ".join(words[i:i + SHINGLE]).encode("utf-8")
            for i in range(len(words) - SHINGLE + 1)]


def signatures(texts: Sequence[str], seed: int = 1) -> np.ndarray:
    """MinHash signatures of ``texts`` (word 5-gram sets): ``(n, NUM_PERM)`` of datasketch's
    hash dtype. The expensive part, computed where the texts are (a shard)."""
    from datasketch import MinHash

    rows = []
    for text in texts:
        m = MinHash(num_perm=NUM_PERM, seed=seed)
        m.update_batch(_shingles(text))
        rows.append(m.hashvalues)
    if not rows:
        return np.zeros((0, NUM_PERM), MinHash(num_perm=NUM_PERM, seed=seed).hashvalues.dtype)
    return np.stack(rows)


def near_duplicates_of(sigs: Iterable[np.ndarray], threshold: float = 0.8,
                       seed: int = 1) -> set[int]:
    """Indices (in order over every row of ``sigs``, blocks of signatures) whose estimated
    Jaccard similarity with an earlier row is at least ``threshold``; the first of each group
    is kept."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    scheme = MinHash(num_perm=NUM_PERM, seed=seed).scheme  # what signatures() used
    drop: set[int] = set()
    i = 0
    for block in sigs:
        for row in np.asarray(block).reshape(-1, NUM_PERM):
            m = MinHash(num_perm=NUM_PERM, seed=seed, hashvalues=row, scheme=scheme)
            if lsh.query(m):
                drop.add(i)
            else:
                lsh.insert(str(i), m)
            i += 1
    return drop


def near_duplicates(texts: Sequence[str], threshold: float = 0.8, seed: int = 1) -> set[int]:
    """Indices of texts whose estimated Jaccard similarity (word 5-gram sets) with an earlier
    text is at least ``threshold``; the first of each group is kept."""
    return near_duplicates_of([signatures(texts, seed)], threshold, seed)

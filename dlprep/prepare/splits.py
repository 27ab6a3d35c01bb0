"""The one stratified split: every builder, loader and trainer that splits by class calls
:func:`stratified_split`."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..errors import DlprepError


def stratified_split(labels: np.ndarray, fractions: Mapping[str, float],
                     seed: int) -> dict[str, np.ndarray]:
    """Split sample positions ``0..N-1`` into ``train`` and the held-out splits of ``fractions``.

    ``labels``: class of each sample (any integers; use one value for unlabelled data).
    ``fractions``: held-out split name -> share, e.g. ``{"test": 0.1, "val": 0.1}``; ``train``
    gets the rest. Returns ``{"train": idx, **{name: idx}}``, each sorted int64 (possibly empty).

    The rule:

    1. Sizes: split ``s`` gets exactly ``round(f_s * N)`` samples (ties to even), at least 1
       when ``f_s > 0``; if that would leave ``train`` empty, the splits named last shrink
       first until ``train`` keeps one sample.
    2. Per class, in proportion: class ``k`` (``n_k`` samples) gets ``floor(f_s * n_k)`` places
       of every split ``s``; then, split by split in the order named, the places left go one at
       a time to the classes with the largest remainders ``f_s * n_k - places`` (ties: smaller
       label). A class gives its last member to a held-out split only when no other class can
       give one, so ``train`` keeps every class whenever ``N - classes >= held-out total``.
    3. Members: each class's positions are permuted once (``numpy.random.default_rng(seed)``,
       classes in ascending label order); split ``s`` takes the next block of that permutation.

    Hence: the same labels, fractions and seed give the same split; a class is in split ``s``
    whenever ``f_s * n_k >= 1`` (unless rule 1 shrank ``s``); splits are disjoint and cover
    every sample.
    Raises ``DlprepError`` unless every fraction is in ``[0, 1)`` and their sum is below 1.
    """
    labels = np.asarray(labels).reshape(-1)
    names = list(fractions)
    fracs = [float(fractions[name]) for name in names]
    for name, frac in zip(names, fracs, strict=True):
        if name == "train":
            raise DlprepError("stratified_split: 'train' is the remainder; do not give its share")
        if not 0.0 <= frac < 1.0:
            raise DlprepError(f"--{name}-fraction: must be in [0, 1), got {frac}")
    if sum(fracs) >= 1.0:
        flags = " + ".join(f"--{name}-fraction" for name in names)
        raise DlprepError(f"{flags} must be below 1, got {sum(fracs):g}")
    n = len(labels)
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    places = _places(counts, fracs, _split_sizes(n, fracs))
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in names]
    members_of = np.argsort(inverse, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(counts)])
    for k in range(len(classes)):
        members = rng.permutation(members_of[bounds[k]:bounds[k + 1]])
        start = 0
        for s, q in enumerate(places):
            parts[s].append(members[start:start + q[k]])
            start += int(q[k])
    held = np.zeros(n, bool)
    out: dict[str, np.ndarray] = {}
    for name, chunk in zip(names, parts, strict=True):
        idx = np.sort(np.concatenate(chunk)) if chunk else np.zeros(0, np.int64)
        held[idx] = True
        out[name] = idx.astype(np.int64)
    return {"train": np.flatnonzero(~held).astype(np.int64), **out}


def _split_sizes(n: int, fracs: list[float]) -> list[int]:
    """Rule 1: held-out split sizes for ``n`` samples."""
    sizes = [max(int(round(f * n)), 1 if f > 0 else 0) for f in fracs]
    for s in reversed(range(len(sizes))):
        while sizes[s] and sum(sizes) > n - 1:
            sizes[s] -= 1
    return sizes


def _places(counts: np.ndarray, fracs: list[float], sizes: list[int]) -> list[np.ndarray]:
    """Rule 2: places of each class in each held-out split (one int64 array per split)."""
    counts = counts.astype(np.int64)
    exact = [f * counts for f in fracs]
    floors = [np.floor(e).astype(np.int64) for e in exact]
    spare = counts - sum(floors, np.zeros_like(counts))  # >= 1 per class: sum(fracs) < 1
    places = []
    for e, q, size in zip(exact, floors, sizes, strict=True):
        q = q.copy()
        while q.sum() > size:  # only when rule 1 shrank this split: the fullest class gives back
            k = len(q) - 1 - int(np.argmax(q[::-1]))
            q[k] -= 1
            spare[k] += 1
        order = np.argsort(-(e - q), kind="stable")  # largest remainder first, ties: class order
        for keep in (1, 0):  # first every class keeps a member for train, then not
            while q.sum() < size:
                room = spare[order] - keep
                open_ = order[room > 0]
                if not len(open_):
                    break
                short = size - int(q.sum())
                take = np.zeros(len(open_), np.int64)
                if short < len(open_):
                    take[:short] = 1
                else:  # every open class takes an equal turn, bounded by its room
                    take = np.minimum(room[room > 0], short // len(open_))
                q[open_] += take
                spare[open_] -= take
        places.append(q)
    return places

"""Aligned text pairs -> one sequence file: ``tokens``/``offsets`` for the first texts
(e.g. questions) and ``answer_tokens``/``answer_offsets`` for the second (their answers), in
the same row order, through one tokenizer (docs/FORMAT.md, "Paired sequences").

The same steps as the text pipeline (:mod:`dlprep.prepare.text`): clean (NFC, control
characters), drop pairs identical to an earlier pair (``--dedupe``), stratified split by pair,
fit the tokenizer (char: on all text; word/bpe: on the train pairs, both sides), encode. No
paragraph chunking: it would break the alignment.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DlprepError
from ..store import SequenceWriter
from ..store.layout import label_axes
from ..text.clean import clean_text
from ..text.tokenizers import fit_tokenizer
from .core import PrepareContext
from .splits import stratified_split

log = logging.getLogger("dlprep")

PairSource = Callable[[], Iterable[tuple[str, str]]]
#: the datasets of the second text of each pair
ANSWER_TOKENS, ANSWER_OFFSETS = "answer_tokens", "answer_offsets"


def _cleaned(pairs: PairSource, o: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    for q, a in pairs():
        yield (clean_text(q, normalize=o["normalize"], control=o["clean_control"]),
               clean_text(a, normalize=o["normalize"], control=o["clean_control"]))


def write_pairs_dataset(ctx: PrepareContext, out: Path, pairs: PairSource,
                        meta: Mapping[str, Sequence[Any]] | None = None, *,
                        labels: Sequence[str] | None = None) -> None:
    """Write the paired sequence file ``out`` from ``pairs`` (a function returning a fresh
    iterator of ``(first, second)`` texts each call; read three times). ``meta`` and
    ``labels`` (class names, sorted into ``classes``) are per pair. A pair with a blank side
    is dropped; raises ``DlprepError`` when none is left."""
    o = ctx.options
    if o["chunk_chars"]:
        raise DlprepError(f"dataset {ctx.name}: --chunk-chars cannot be used with --pairs "
                          f"(chunks would break the question/answer alignment)")
    seen: set[bytes] = set()
    keep: list[bool] = []
    dropped = {"blank": 0, "duplicate": 0}
    for q, a in _cleaned(pairs, o):
        if not q.strip() or not a.strip():
            keep.append(False)
            dropped["blank"] += 1
            continue
        if o["dedupe"]:
            digest = hashlib.blake2b(f"{q}\x00{a}".encode("utf-8", "surrogatepass"),
                                     digest_size=16).digest()
            if digest in seen:
                keep.append(False)
                dropped["duplicate"] += 1
                continue
            seen.add(digest)
        keep.append(True)
    seen.clear()
    rows = [i for i, k in enumerate(keep) if k]
    if any(dropped.values()):
        log.info("dropped pairs: %s", ", ".join(f"{v} {k}" for k, v in dropped.items() if v))
    if not rows:
        raise DlprepError(f"dataset {ctx.name}: no question/answer pair left after cleaning")

    def kept() -> Iterator[tuple[str, str]]:
        for flag, pair in zip(keep, _cleaned(pairs, o), strict=True):
            if flag:
                yield pair

    classes = label_ids = None
    if labels is not None:
        classes = sorted({str(labels[r]) for r in rows})
        index = {c: k for k, c in enumerate(classes)}
        label_ids = [index[str(labels[r])] for r in rows]
    by_class = np.asarray(label_ids if label_ids is not None else np.zeros(len(rows)), np.int64)
    splits = {k: idx for k, idx in stratified_split(
        by_class, {"test": o["test_fraction"], "val": o["val_fraction"]}, o["seed"]).items()
        if k == "train" or len(idx)}
    in_train = np.zeros(len(rows), bool)
    in_train[splits["train"]] = True
    char = o["tokenizer"] == "char"
    fit_docs = (t for n, pair in enumerate(kept()) if char or in_train[n] for t in pair)
    tok = fit_tokenizer(o["tokenizer"], fit_docs, lowercase=o["lowercase"],
                        min_freq=o["min_freq"], max_vocab=o["max_vocab"],
                        keep_whitespace=o["keep_whitespace"])
    doc_meta = {k: [list(v)[r] for r in rows] for k, v in (meta or {}).items()}
    writer = SequenceWriter(out)
    try:
        answers = writer.f.create_dataset(ANSWER_TOKENS, shape=(0,), maxshape=(None,),
                                          dtype=np.int32, chunks=(1 << 16,))
        label_axes(answers, ("time",))
        answer_offsets = [0]
        block: list[np.ndarray] = []
        for q, a in kept():
            writer.append(tok.encode_array(q))
            ids = tok.encode_array(a)
            block.append(ids)
            answer_offsets.append(answer_offsets[-1] + len(ids))
            if answer_offsets[-1] - answers.shape[0] >= 1 << 20:
                _flush(answers, block)
        _flush(answers, block)
        off = writer.f.create_dataset(ANSWER_OFFSETS,
                                      data=np.asarray(answer_offsets, dtype=np.int64))
        label_axes(off, ("batch",))
        writer.finish(splits=splits, labels=label_ids, classes=classes, vocab=tok.vocab,
                      tokenizer=tok.config, meta=doc_meta or None,
                      extra_attrs={"pairs": "question/accepted answer: tokens/offsets and "
                                            f"{ANSWER_TOKENS}/{ANSWER_OFFSETS}, same rows"},
                      **ctx.finish_kwargs())
    finally:
        writer.close()


def _flush(dset: Any, block: list[np.ndarray]) -> None:
    if not block:
        return
    data = np.concatenate(block)
    start = dset.shape[0]
    dset.resize(start + len(data), axis=0)
    dset[start:] = data
    block.clear()

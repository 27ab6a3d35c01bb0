"""The shared text pipeline: texts -> ragged token sequences (``kind = "sequence"``).

Used by the ``text-files`` (:mod:`.text_files`), ``csv-text`` (:mod:`.text_csv`), ``gutenberg``
and ``hf`` builders. The pipeline (:func:`write_text_dataset`): clean (NFC, control
characters) -> optional paragraph chunks -> drop identical documents -> split by document
(stratified when labelled) -> fit the tokenizer (word/bpe: on the train split; char: on all
text) -> ``tokens``/``offsets``/``vocab`` + tokenizer config.
Language-model windows are cut at load time from the documents of one split (so no document is
in two splits and no window mixes splits; ``lm_windows(cross_documents=False)`` also keeps each
window inside one document).
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
from ..text.clean import NORMAL_FORMS, chunk_paragraphs, clean_text
from ..text.tokenizers import KINDS, fit_tokenizer
from .core import PrepareContext
from .params import Param
from .splits import stratified_split

log = logging.getLogger("dlprep")

TEXT_PARAMS: tuple[Param, ...] = (
    Param("tokenizer", "str", "char", "token unit: char, word (regex words + symbols) or bpe "
                                      "(byte-level BPE, needs the 'text' extra)", KINDS),
    Param("lowercase", "bool", False, "lowercase the text before tokenizing"),
    Param("min_freq", "int", 1, "tokens seen fewer times (in the train split; char: in all "
                                "text) become <unk>"),
    Param("max_vocab", "int", 0, "vocabulary size cap incl. the 4 special tokens (0: none; "
                                 "bpe: 8000)"),
    Param("keep_whitespace", "bool", True, "word tokenizer: keep whitespace runs as tokens so "
                                           "decode() round-trips the text"),
    Param("normalize", "str", "NFC", "Unicode normalisation form (or none)", NORMAL_FORMS),
    Param("clean_control", "bool", True, "CRLF/CR -> LF, drop other control characters"),
    Param("dedupe", "bool", True, "drop documents identical to an earlier one"),
    Param("chunk_chars", "int", 0, "cut each text at paragraph breaks into documents of about "
                                   "this many characters (0: one document per text)"),
    Param("val_fraction", "float", 0.1, "share of documents in the val split"),
    Param("test_fraction", "float", 0.1, "share of documents in the test split"),
    Param("seed", "int", 0, "seed of the document split"),
)

TextSource = Callable[[], Iterable[str]]


def _documents(texts: TextSource, o: Mapping[str, Any]) -> Iterator[tuple[int, int, str]]:
    """``(text index, chunk index, document)`` of the cleaned, chunked, non-blank texts."""
    for i, text in enumerate(texts()):
        text = clean_text(text, normalize=o["normalize"], control=o["clean_control"])
        pieces = chunk_paragraphs(text, o["chunk_chars"]) if o["chunk_chars"] > 0 else [text]
        for k, piece in enumerate(pieces):
            if piece.strip():
                yield i, k, piece


def write_text_dataset(ctx: PrepareContext, out: Path, texts: TextSource | Sequence[str],
                       meta: Mapping[str, Sequence[Any]] | None = None, *,
                       labels: Sequence[str] | None = None,
                       classes: Sequence[str] | None = None,
                       extra_attrs: Mapping[str, Any] | None = None) -> None:
    """Clean, chunk, dedupe, split, tokenize ``texts`` and write the sequence HDF5 ``out``.

    ``texts``: a list, or a function returning a fresh iterator over the texts each time it
    is called (e.g. re-reading files): the texts are streamed three times (dedupe + origin,
    tokenizer fit, encode), so memory does not grow with the corpus beyond a few bytes per
    document. ``meta`` holds per-text values (kept per document; chunks repeat their text's
    values and get ``meta/chunk``). ``labels`` are class names; ``classes`` fixes their order
    (else sorted). ``extra_attrs``: further root attributes (e.g. what a builder dropped).
    Raises ``DlprepError`` when nothing is left or a label is not in ``classes``.
    """
    o = ctx.options
    source: TextSource = texts if callable(texts) else (lambda: iter(texts))  # type: ignore[arg-type,return-value]
    # pass 1: which documents are kept (identical ones dropped by a 128-bit digest) and where
    # each comes from
    seen: set[bytes] = set()
    keep: list[bool] = []
    rows: list[int] = []
    chunk_no: list[int] = []
    for i, k, doc in _documents(source, o):
        if o["dedupe"]:
            digest = hashlib.blake2b(doc.encode("utf-8", "surrogatepass"), digest_size=16).digest()
            if digest in seen:
                keep.append(False)
                continue
            seen.add(digest)
        keep.append(True)
        rows.append(i)
        chunk_no.append(k)
    seen.clear()
    if len(rows) < len(keep):
        log.info("dropped %d duplicate documents", len(keep) - len(rows))
    if not rows:
        raise DlprepError(f"dataset {ctx.name}: no text left after cleaning (empty input?)")

    def kept() -> Iterator[str]:
        for flag, (_, _, doc) in zip(keep, _documents(source, o), strict=True):
            if flag:
                yield doc

    doc_meta: dict[str, list[Any]] = {}
    for key, values in (meta or {}).items():
        values = list(values)
        doc_meta[key] = [values[r] for r in rows]
    if o["chunk_chars"] > 0:
        doc_meta["chunk"] = chunk_no
    label_ids = None
    if labels is not None:
        names = list(classes) if classes else sorted({str(x) for x in labels})
        index = {c: k for k, c in enumerate(names)}
        unknown = sorted({str(labels[r]) for r in rows} - set(index))
        if unknown:
            raise DlprepError(f"dataset {ctx.name}: labels {unknown[:5]} are not among the "
                              f"recipe's classes {names}")
        label_ids = [index[str(labels[r])] for r in rows]
        classes = names
    by_class = label_ids if label_ids is not None else np.zeros(len(rows), np.int64)
    splits = {k: idx for k, idx in stratified_split(
        by_class, {"test": o["test_fraction"], "val": o["val_fraction"]}, o["seed"]).items()
        if k == "train" or len(idx)}
    # word/bpe vocabularies come from the train split only; the char inventory from all text,
    # so that every split decodes exactly and an LM's bits/char never meets <unk>
    if o["tokenizer"] == "char":
        fit_docs: Iterable[str] = kept()
    else:
        in_train = np.zeros(len(rows), bool)
        in_train[splits["train"]] = True
        fit_docs = (doc for n, doc in enumerate(kept()) if in_train[n])
    tok = fit_tokenizer(o["tokenizer"], fit_docs, lowercase=o["lowercase"],
                        min_freq=o["min_freq"], max_vocab=o["max_vocab"],
                        keep_whitespace=o["keep_whitespace"])
    writer = SequenceWriter(out)
    try:
        for doc in kept():
            writer.append(tok.encode_array(doc))
        writer.finish(splits=splits, labels=label_ids, classes=classes, vocab=tok.vocab,
                      tokenizer=tok.config, meta=doc_meta or None, extra_attrs=extra_attrs,
                      **ctx.finish_kwargs())
    finally:
        writer.close()

"""The shared text pipeline (:mod:`dlprep.prepare.text`) on shards, with the same bytes.

A text builder's shard writes a :class:`TextPart`: its texts already cleaned and chunked into
documents (with a 128-bit digest each) plus per-text meta. :func:`assemble_text` then does
what ``write_text_dataset`` does, in stages: drop documents identical to an earlier one (in
plan order, from the digests), split, fit the tokenizer (char/word: token counts per shard
summed, then ranked: the same vocabulary as one fit over everything; bpe: fitted here on the
train documents read back from the parts), encode each part on the executor, and append the
encoded parts in order. The result equals ``write_text_dataset`` over the same texts.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections import Counter
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from ..errors import DlprepError
from ..store import SequenceWriter
from ..text.clean import chunk_paragraphs, clean_text
from ..text.tokenizers import CharTokenizer, WordTokenizer, fit_tokenizer, from_prepared
from .shards import ShardSpec, write_h5_part

if TYPE_CHECKING:
    from ..prepare.core import PrepareContext
    from .build import ShardJob

log = logging.getLogger("dlprep")

#: the text options a shard needs (pass ``text_options(ctx.options)`` in the spec)
TEXT_SHARD_OPTIONS = ("normalize", "clean_control", "chunk_chars")
_STR = h5py.string_dtype("utf-8")


def text_options(options: Mapping[str, Any]) -> dict[str, Any]:
    return {k: options[k] for k in TEXT_SHARD_OPTIONS}


class TextPart:
    """Collects one shard's texts; :meth:`write` stores them at ``path`` (HDF5).

    ``meta``: name -> ``"str"`` or ``"int"``, the per-text values given to :meth:`add`.
    """

    def __init__(self, options: Mapping[str, Any], meta: Mapping[str, str]) -> None:
        self.o = {k: options[k] for k in TEXT_SHARD_OPTIONS}
        self.kinds = dict(meta)
        self.meta: dict[str, list[Any]] = {k: [] for k in meta}
        self.n_texts = 0
        self.docs: list[bytes] = []
        self.doc_text: list[int] = []
        self.doc_chunk: list[int] = []

    def add(self, text: str, meta: Mapping[str, Any]) -> None:
        """One text (e.g. a page) and its meta values; cleaned and chunked here exactly as
        ``write_text_dataset`` does (blank documents dropped)."""
        i = self.n_texts
        self.n_texts += 1
        for key in self.kinds:
            self.meta[key].append(meta[key])
        text = clean_text(text, normalize=self.o["normalize"], control=self.o["clean_control"])
        chunk = self.o["chunk_chars"]
        pieces = chunk_paragraphs(text, chunk) if chunk > 0 else [text]
        for k, piece in enumerate(pieces):
            if piece.strip():
                self.docs.append(piece.encode("utf-8", "surrogatepass"))
                self.doc_text.append(i)
                self.doc_chunk.append(k)

    def write(self, path: Path) -> dict[str, int]:
        """Write the part; returns its counts (``texts``, ``docs``, ``bytes``)."""
        lengths = np.fromiter((len(d) for d in self.docs), np.int64, len(self.docs))
        offsets = np.zeros(len(self.docs) + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        digests = np.frombuffer(b"".join(
            hashlib.blake2b(d, digest_size=16).digest() for d in self.docs), np.uint8)
        def fill(f: h5py.File) -> None:
            f.attrs["texts"] = self.n_texts
            f.create_dataset("doc_bytes", data=np.frombuffer(b"".join(self.docs), np.uint8))
            f.create_dataset("doc_offsets", data=offsets)
            f.create_dataset("doc_text", data=np.asarray(self.doc_text, np.int64))
            f.create_dataset("doc_chunk", data=np.asarray(self.doc_chunk, np.int64))
            f.create_dataset("doc_digest", data=digests.reshape(-1, 16))
            for key, kind in self.kinds.items():
                values = self.meta[key]
                if kind == "int":
                    f.create_dataset(f"meta/{key}", data=np.asarray(values, np.int64))
                else:
                    f.create_dataset(f"meta/{key}", data=np.array(values, dtype=object),
                                     dtype=_STR)

        write_h5_part(path, fill)
        return {"texts": self.n_texts, "docs": len(self.docs), "bytes": int(offsets[-1])}


def _read_index(path: Path) -> dict[str, Any]:
    with h5py.File(path, "r") as f:
        return {"texts": int(f.attrs["texts"]), "doc_text": f["doc_text"][()],
                "doc_chunk": f["doc_chunk"][()], "doc_digest": f["doc_digest"][()]}


def _read_meta(path: Path, key: str, kind: str, n: int) -> list[Any]:
    with h5py.File(path, "r") as f:
        if kind == "int":
            return f[f"meta/{key}"][:n].tolist()  # type: ignore[no-any-return]
        return [v.decode("utf-8", "surrogatepass") for v in f[f"meta/{key}"][:n]]


def iter_part_docs(path: Path, mask: np.ndarray | None = None) -> Iterator[str]:
    """The documents of a part (those where ``mask`` is true), in order."""
    with h5py.File(path, "r") as f:
        blob = f["doc_bytes"][()].tobytes()
        offsets = f["doc_offsets"][()]
    for n in range(len(offsets) - 1):
        if mask is None or mask[n]:
            yield blob[offsets[n]:offsets[n + 1]].decode("utf-8", "surrogatepass")


def _mask_option(mask: np.ndarray) -> str:
    return np.packbits(mask.astype(bool)).tobytes().hex() + f":{len(mask)}"


def _mask_of(spec: ShardSpec, name: str) -> np.ndarray:
    hexbits, _, n = str(spec.option(name)).partition(":")
    return np.unpackbits(np.frombuffer(bytes.fromhex(hexbits), np.uint8))[:int(n)].astype(bool)


def count_part(spec: ShardSpec, part: Path | None) -> dict[str, Any]:
    """Stage 2 (a shard function): token counts of the part's masked documents."""
    docs = iter_part_docs(Path(spec.paths[0]), _mask_of(spec, "mask"))
    if spec.option("kind") == "char":
        counts = CharTokenizer.count(docs, lowercase=spec.option("lowercase"))
    else:
        counts = WordTokenizer.count(docs, lowercase=spec.option("lowercase"),
                                     keep_whitespace=spec.option("keep_whitespace"))
    return {"counts": dict(counts)}


@functools.lru_cache(maxsize=2)
def _tokenizer(path: str, digest: str) -> Any:
    saved = json.loads(Path(path).read_text(encoding="utf-8"))
    return from_prepared(saved["vocab"], saved["config"])


def encode_part(spec: ShardSpec, part: Path | None) -> dict[str, Any]:
    """Stage 3 (a shard function): the part's kept documents encoded, written to ``part``
    as ``tokens`` (int32, back to back) and ``lengths``."""
    assert part is not None
    tok = _tokenizer(spec.paths[1], spec.option("tokenizer"))
    arrays = [tok.encode_array(d) for d in iter_part_docs(Path(spec.paths[0]),
                                                          _mask_of(spec, "mask"))]
    lengths = np.fromiter((len(a) for a in arrays), np.int64, len(arrays))
    tokens = np.concatenate(arrays).astype(np.int32) if arrays else np.zeros(0, np.int32)
    def fill(f: h5py.File) -> None:
        f.create_dataset("tokens", data=tokens)
        f.create_dataset("lengths", data=lengths)

    write_h5_part(part, fill)
    return {"docs": len(arrays), "tokens": int(lengths.sum())}


def assemble_text(ctx: PrepareContext, out: Path, job: ShardJob, meta: Mapping[str, str],
                  *, max_texts: int = 0,
                  drop_texts: Sequence[Collection[int]] | None = None) -> int:
    """Write the sequence file ``out`` from the job's :class:`TextPart` parts (see the
    module docstring); ``meta`` as given to the parts; ``max_texts``: keep only the first
    that many texts (0: all); ``drop_texts``: per part, the texts (indices in the part) to
    leave out, as if they had never been added (e.g. near-duplicates found across parts).
    Returns the number of documents written."""
    o = ctx.options
    parts = job.parts
    seen: set[bytes] = set()
    masks: list[np.ndarray] = []
    rows: list[np.ndarray] = []
    chunks: list[np.ndarray] = []
    n_texts = dropped = 0
    used: list[int] = []  # texts taken from each part
    for path in parts:
        idx = _read_index(path)
        take = idx["texts"] if not max_texts else max(0, min(idx["texts"], max_texts - n_texts))
        in_range = idx["doc_text"] < take
        if drop_texts is not None and drop_texts[len(masks)]:
            in_range &= ~np.isin(idx["doc_text"], np.fromiter(drop_texts[len(masks)], np.int64))
        keep = in_range.copy()
        if o["dedupe"]:
            for n in np.flatnonzero(in_range):
                d = idx["doc_digest"][n].tobytes()
                if d in seen:
                    keep[n] = False
                    dropped += 1
                else:
                    seen.add(d)
        masks.append(keep)
        rows.append(idx["doc_text"][keep] + n_texts)
        chunks.append(idx["doc_chunk"][keep])
        used.append(take)
        n_texts += take
    seen.clear()
    if dropped:
        log.info("dropped %d duplicate documents", dropped)
    all_rows = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    if not len(all_rows):
        raise DlprepError(f"dataset {ctx.name}: no text left after cleaning (empty input?)")
    doc_meta: dict[str, list[Any]] = {}
    for key, kind in meta.items():
        values: list[Any] = []
        for path, take in zip(parts, used, strict=True):
            values += _read_meta(path, key, kind, take)
        doc_meta[key] = [values[r] for r in all_rows.tolist()]
    if o["chunk_chars"] > 0:
        doc_meta["chunk"] = np.concatenate(chunks).tolist()
    from ..prepare.splits import stratified_split

    n_docs = len(all_rows)
    splits = {k: idx for k, idx in stratified_split(
        np.zeros(n_docs, np.int64), {"test": o["test_fraction"], "val": o["val_fraction"]},
        o["seed"]).items() if k == "train" or len(idx)}
    fit_masks = masks
    if o["tokenizer"] != "char":  # word/bpe vocabularies come from the train split only
        in_train = np.zeros(n_docs, bool)
        in_train[splits["train"]] = True
        fit_masks, start = [], 0
        for keep in masks:
            m = np.zeros(len(keep), bool)
            k = np.flatnonzero(keep)
            m[k] = in_train[start:start + len(k)]
            start += len(k)
            fit_masks.append(m)
    tok = _fit(ctx, job, parts, fit_masks)
    tok_file = job.parts_dir / "tokenizer.json"
    saved = json.dumps({"vocab": list(tok.vocab), "config": tok.config}, sort_keys=True)
    tok_file.write_text(saved, encoding="utf-8")
    tok_digest = hashlib.sha256(saved.encode()).hexdigest()
    specs = [ShardSpec.make(f"enc-{s.id}", [p, tok_file], options={
        "mask": _mask_option(m), "tokenizer": tok_digest})
        for s, p, m in zip(job.specs, parts, masks, strict=True)]
    run = job.map(specs, encode_part, stage="tokens", key=tok_digest, desc=f"{ctx.name} encode")
    from .manifest import part_path

    writer = SequenceWriter(out)
    try:
        for spec in specs:
            with h5py.File(part_path(job.parts_dir / "tokens", spec.id), "r") as f:
                writer.extend_flat(f["tokens"][()], f["lengths"][()])
        if writer.count != n_docs:
            raise DlprepError(f"dataset {ctx.name}: encoded {writer.count} documents, "
                              f"expected {n_docs} (a part changed during the run?)")
        writer.finish(splits=splits, vocab=tok.vocab, tokenizer=tok.config,
                      meta=doc_meta or None, **ctx.finish_kwargs())
    finally:
        writer.close()
    log.debug("encoded %d documents on %s", n_docs, run.executor)
    return n_docs


def _fit(ctx: PrepareContext, job: ShardJob, parts: Sequence[Path],
         masks: Sequence[np.ndarray]) -> Any:
    o = ctx.options
    kind = o["tokenizer"]
    if kind == "bpe":  # the library trains on the texts themselves, here
        docs = (d for p, m in zip(parts, masks, strict=True) for d in iter_part_docs(p, m))
        return fit_tokenizer(kind, docs, lowercase=o["lowercase"], min_freq=o["min_freq"],
                             max_vocab=o["max_vocab"], keep_whitespace=o["keep_whitespace"])
    specs = [ShardSpec.make(f"count-{s.id}", [p], options={
        "mask": _mask_option(m), "kind": kind, "lowercase": o["lowercase"],
        "keep_whitespace": o["keep_whitespace"]})
        for s, p, m in zip(job.specs, parts, masks, strict=True)]
    run = job.map(specs, count_part, desc=f"{ctx.name} vocabulary")
    total: Counter[str] = Counter()
    for stats in run.stats:
        total.update(stats["counts"])
    if kind == "char":
        return CharTokenizer.from_counts(total, lowercase=o["lowercase"],
                                         min_freq=o["min_freq"], max_vocab=o["max_vocab"])
    return WordTokenizer.from_counts(total, lowercase=o["lowercase"], min_freq=o["min_freq"],
                                     max_vocab=o["max_vocab"],
                                     keep_whitespace=o["keep_whitespace"])

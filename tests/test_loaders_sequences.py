"""Sequence datasets: ragged items, decode, LM windows made at load time, pad/pack collate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import dlprep
from dlprep.data import pad_batch
from dlprep.errors import StoreError
from dlprep.store import SequenceWriter, atomic_output

SPECIALS = ["<pad>", "<unk>", "<bos>", "<eos>"]


def char_file(path: Path, docs: list[str], labels: list[int] | None = None,
              splits: dict[str, np.ndarray] | None = None) -> tuple[Path, list[str]]:
    vocab = SPECIALS + sorted(set("".join(docs)))
    index = {c: i for i, c in enumerate(vocab)}
    with atomic_output(path) as tmp:
        w = SequenceWriter(tmp, chunk=256)
        for d in docs:
            w.append(np.array([index[c] for c in d], np.int32))
        n = len(docs)
        w.finish(recipe="chars", recipe_version="1", labels=labels,
                 classes=["short", "long"] if labels is not None else None,
                 splits=splits or {"train": np.arange(n)}, vocab=vocab,
                 tokenizer={"type": "char"})
    return path, vocab


@pytest.fixture
def alice(realdata: Path, tmp_path: Path) -> tuple[Path, list[str]]:
    """Paragraphs of the real Project Gutenberg 'Alice' text, labelled short/long."""
    text = (realdata / "gutenberg" / "11-0.txt").read_text(encoding="utf-8-sig")
    text = text.replace("\r\n", "\n")
    paras = [" ".join(p.split()) for p in text.split("\n\n") if p.strip()][:400]
    assert len(paras) == 400
    labels = [int(len(p) > 200) for p in paras]
    splits = {"train": np.arange(0, 300), "test": np.arange(300, 400)}
    path, _ = char_file(tmp_path / "alice.h5", paras, labels, splits)
    return path, paras


def test_ragged_items_and_decode(alice: tuple[Path, list[str]]) -> None:
    path, paras = alice
    ds = dlprep.load(path)
    assert ds.kind == "sequence" and len(ds) == 300 and ds.classes == ["short", "long"]
    assert ds.tokenizer == {"type": "char"} and ds.vocab[:4] == SPECIALS
    for i in (0, 17, 299):
        ids, label = ds[i]
        assert ids.dtype == np.int64 and len(ids) == len(paras[i])
        assert ds.decode(ids) == paras[i] and label == int(len(paras[i]) > 200)
    test = dlprep.load(path, "test")
    assert test.decode(test[0][0]) == paras[300]
    assert np.array_equal(ds.lengths, [len(p) for p in paras[:300]])


def test_lm_windows_match_concatenated_stream(alice: tuple[Path, list[str]]) -> None:
    path, paras = alice
    ds = dlprep.load(path, "test")
    stream = "".join(paras[300:400])
    win = ds.lm_windows(64)
    assert len(win) == (len(stream) - 65) // 64 + 1
    for k in (0, 1, len(win) - 1):
        x, y = win[k]
        assert x.dtype == np.int64 and x.shape == (64,) and y.shape == (64,)
        assert ds.decode(x) == stream[k * 64:k * 64 + 64]
        assert np.array_equal(x[1:], y[:-1])
        assert ds.decode(y) == stream[k * 64 + 1:k * 64 + 65]
    strided = ds.lm_windows(32, stride=8)
    assert len(strided) == (len(stream) - 33) // 8 + 1
    assert ds.decode(strided[3][0]) == stream[24:56]
    with pytest.raises(IndexError):
        win[len(win)]


def test_lm_windows_across_non_adjacent_documents(tmp_path: Path) -> None:
    docs = ["abc", "defg", "hi", "jklmn"]
    path, _ = char_file(tmp_path / "d.h5", docs,
                        splits={"train": np.array([0, 2, 3]), "test": np.array([1])})
    ds = dlprep.load(path)
    win = ds.lm_windows(3, stride=2)
    stream = "abc" + "hi" + "jklmn"
    assert [ds.decode(win[k][0]) for k in range(len(win))] == \
        [stream[s:s + 3] for s in range(0, len(stream) - 3, 2)]
    inside = ds.lm_windows(2, stride=1, cross_documents=False)
    assert [ds.decode(inside[k][0]) + ds.decode(inside[k][1][-1:]) for k in range(len(inside))] \
        == ["abc", "jkl", "klm", "lmn"]
    assert len(ds.lm_windows(9, cross_documents=False)) == 0


def test_sequence_dataloader_collate(alice: tuple[Path, list[str]]) -> None:
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader

    path, paras = alice
    ds = dlprep.load(path)
    assert isinstance(ds, torch.utils.data.Dataset)
    x, lengths, y = next(iter(DataLoader(ds, batch_size=8, collate_fn=ds.collate)))
    assert x.dtype == torch.int64 and x.shape == (8, max(len(p) for p in paras[:8]))
    assert lengths.tolist() == [len(p) for p in paras[:8]]
    assert (x[0, lengths[0]:] == 0).all() and y.tolist() == [int(len(p) > 200) for p in paras[:8]]
    packed, y2 = next(iter(DataLoader(ds, batch_size=8, collate_fn=ds.pack_collate,
                                      num_workers=2)))
    assert isinstance(packed, torch.nn.utils.rnn.PackedSequence)
    assert int(packed.batch_sizes.sum()) == sum(len(p) for p in paras[:8])
    win = ds.lm_windows(50)
    xb, yb = next(iter(DataLoader(win, batch_size=4, shuffle=True)))
    assert xb.shape == (4, 50) and torch.equal(xb[:, 1:], yb[:, :-1])
    seen = sorted(i for r in range(2) for i in win.sampler(rank=r, world_size=2, seed=1))
    assert seen == list(range(len(win)))


def test_values_sequences_and_padding(tmp_path: Path) -> None:
    path = tmp_path / "strokes.h5"
    rng = np.random.default_rng(0)
    seqs = [rng.normal(size=(n, 3)).astype(np.float32) for n in (5, 2, 7)]
    with atomic_output(path) as tmp:
        w = SequenceWriter(tmp, features=3, chunk=16)
        w.extend(seqs)
        w.finish(recipe="strokes", recipe_version="1", splits={"train": np.arange(3)})
    ds = dlprep.load(path)
    for i, s in enumerate(seqs):
        v, label = ds[i]
        assert v.dtype == np.float32 and np.array_equal(v, s) and label == -1
    padded, lengths = pad_batch([ds[i][0] for i in range(3)])
    assert padded.shape == (3, 7, 3) and lengths.tolist() == [5, 2, 7]
    assert (padded[1, 2:] == 0).all()
    with pytest.raises(StoreError, match="tokens"):
        ds.lm_windows(4)
    with pytest.raises(StoreError, match="image sets"):
        dlprep.batches(path)

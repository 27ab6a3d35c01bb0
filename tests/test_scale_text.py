"""The shared text pipeline on shards (dlprep.scale.text) gives the same arrays, vocabulary and
meta as ``write_text_dataset`` over the same texts: real Wikipedia text, documents repeated
across shards (dedupe in plan order), chunking, word/char/bpe tokenizers, vocabulary caps."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import h5py
import pytest
import scale_shards
from conftest import REALDATA
from test_wiki_dump import EXCERPT

from dlprep.cache import Cache
from dlprep.prepare.core import PrepareContext
from dlprep.prepare.params import resolve_options
from dlprep.prepare.text import TEXT_PARAMS, write_text_dataset
from dlprep.prepare.wiki_pages import Counts, DumpPart, PageOptions, iter_records
from dlprep.recipes import find_recipe
from dlprep.scale import build_sharded, last_timings


@pytest.fixture(scope="module")
def texts() -> list[str]:
    """The excerpt's 34 articles under 10,000 characters (raw cleaner output) and one long
    one, with four of them repeated later on (in other shards) and one blank text."""
    recs = list(iter_records([DumpPart(REALDATA / EXCERPT)], PageOptions(), Counts()))
    small = [r.text for r in recs if len(r.text) < 10_000]
    out = [recs[0].text, *small[:20]]
    return out + [out[3], "  \n ", out[14]] + small[20:] + [out[0], out[20]]


def _datasets(path: Path) -> dict[str, object]:
    out: dict[str, object] = {}
    with h5py.File(path, "r") as f:
        def visit(name: str, obj: object) -> None:
            if isinstance(obj, h5py.Dataset):
                d = obj[()]
                out[name] = d.tobytes() if d.dtype.kind != "O" else list(d)
        f.visititems(visit)
        out["@tokenizer"] = f.attrs["tokenizer"]
    return out


CASES = [
    {"tokenizer": "word"},
    {"tokenizer": "word", "lowercase": "true", "min_freq": "2", "max_vocab": "500",
     "keep_whitespace": "false", "seed": "3"},
    {"tokenizer": "char", "chunk_chars": "2000", "val_fraction": "0.2"},
    {"tokenizer": "char", "dedupe": "false", "max_vocab": "60", "normalize": "NFKC"},
]
if importlib.util.find_spec("tokenizers"):
    CASES.append({"tokenizer": "bpe", "max_vocab": "400"})


@pytest.mark.parametrize("overrides", CASES, ids=[c["tokenizer"] for c in CASES])
def test_sharded_text_pipeline_equals_serial(texts: list[str], tmp_path: Path,
                                             overrides: dict[str, str]) -> None:
    options = resolve_options(TEXT_PARAMS, {}, overrides, "test")
    cache = Cache.open(tmp_path / "cache")
    ctx = PrepareContext(recipe=find_recipe("wikipedia"), options=options, cache=cache,
                         name="t")
    src = tmp_path / "texts.json"
    src.write_text(json.dumps(texts))
    ctx.collected = (str(src), len(texts), 3)  # 14 shards of 3 texts
    sharded, serial = tmp_path / "sharded.h5", tmp_path / "serial.h5"
    build_sharded(scale_shards, ctx, sharded)
    assert last_timings()["n_shards"] == 14 and last_timings()["shards_run"] == 14
    write_text_dataset(ctx, serial, texts, {"n": list(range(len(texts))),
                                            "first": [t[:12] for t in texts]})
    a, b = _datasets(sharded), _datasets(serial)
    assert {"tokens", "offsets", "vocab", "meta/n", "splits/train"} <= set(a)
    assert a == b
    n_docs = len(a["meta/n"]) // 8  # type: ignore[arg-type]
    if overrides.get("chunk_chars"):
        assert n_docs > len(texts)
    else:  # the blank text, and the 4 repeats unless --dedupe false
        assert n_docs == len(texts) - (1 if overrides.get("dedupe") == "false" else 5)

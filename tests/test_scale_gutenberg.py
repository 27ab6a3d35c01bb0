"""The Gutenberg builder on shards (dlprep.scale): shards are ranges of the chosen book ids. Real
ebooks (and variants of them) served by the loopback server; serial, `--workers 2` (dlprep's own
LocalCluster) and `--scheduler` (a LocalCluster of 2 worker processes started for the module)
give the same file, and the same file as the unsharded builder before the change
(``write_text_dataset`` over the stripped books, called here the way it did); a run stopped by a
bad book resumes from the shards it finished."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from conftest import invoke_cli
from scale_shards import dask_imports, finished_shards, run_and_kill

from dlprep.cache import Cache
from dlprep.fetch.options import FetchOptions
from dlprep.prepare import gutenberg
from dlprep.prepare.core import _context
from dlprep.prepare.text import write_text_dataset
from dlprep.recipes import find_recipe
from dlprep.scale import last_timings
from dlprep.sources.gutenberg import read_book
from dlprep.text.clean import strip_gutenberg

IDS = "1342,11,12,15,13,14"  # not sorted: the order --ids gives is the order of the file


def _books(realdata: Path) -> dict[int, bytes]:
    """Two real ebooks, three variants (other words, so other tokens) and one exact copy (a
    duplicate document in another shard, dropped by --dedupe)."""
    alice = (realdata / "gutenberg/11-0.txt").read_bytes()
    pride = (realdata / "gutenberg/pg1342.txt").read_bytes()
    return {1342: pride, 11: alice, 12: alice.replace(b"Alice", b"Alicia"),
            15: alice, 13: alice.replace(b"Rabbit", b"Hare"),
            14: pride.replace(b"Elizabeth", b"Eliza")}


def _serve(loopback, books: dict[int, bytes]) -> None:  # type: ignore[no-untyped-def]
    for i, data in books.items():
        loopback.serve(f"/cache/epub/{i}/pg{i}.txt", data,
                       content_type="text/plain; charset=utf-8")


def _fetch(cache: Path, base: str, *args: str) -> Path:
    proc = invoke_cli("fetch", "gutenberg", "--mirror", base, "--base-url", "", "--ids", IDS,
                      "--name", "books", *args, cache_dir=cache)
    assert proc.returncode == 0, proc.stderr
    return Path(proc.stdout.strip().splitlines()[-1])


def _fetch_ids(cache: Path, base: str, args: list[str]) -> Path:
    proc = invoke_cli(*args, cache_dir=cache)
    assert proc.returncode == 0, proc.stderr
    return Path(proc.stdout.strip().splitlines()[-1])


def _contents(path: Path, *skip: str) -> dict[str, Any]:
    """Every dataset (its bytes, or its values for strings) and every root attribute but the
    time the file was written (and the attributes ``skip``)."""
    out: dict[str, Any] = {}
    with h5py.File(path, "r") as f:
        def visit(name: str, obj: object) -> None:
            if isinstance(obj, h5py.Dataset):
                d = obj[()]
                out[name] = (d.dtype.str, d.shape, d.tobytes() if d.dtype.kind != "O"
                             else list(d))
        f.visititems(visit)
        for key, value in f.attrs.items():
            if key not in ("created", *skip):
                out[f"@{key}"] = value.tolist() if isinstance(value, np.ndarray) else value
    return out


def _unsharded(cache: Path, base: str, options: dict[str, str], where: Path) -> Path:
    """The file the builder wrote before it was sharded: ``collect`` (downloads from ``base``),
    then ``write_text_dataset`` over the stripped books with their meta, as its ``build``
    did, into ``where/<config hash>.h5``."""
    ctx = _context(find_recipe("gutenberg"), Cache.open(cache), gutenberg, options, "books",
                   FetchOptions(mirrors=(base,)), None)
    ctx.collected = gutenberg.collect(ctx)
    ids = ctx.collected.ids
    meta: dict[str, list] = {k: [] for k in ("id", "title", "author", "language", "license")}
    for book_id in ids:
        pg = strip_gutenberg(read_book(ctx.files[str(book_id)]))
        meta["id"].append(book_id)
        meta["title"].append(pg.title)
        meta["author"].append(pg.author)
        meta["language"].append(pg.language)
        meta["license"].append(pg.license or ctx.recipe.license)

    def bodies() -> Iterator[str]:
        for book_id in ids:
            yield strip_gutenberg(read_book(ctx.files[str(book_id)])).body

    out = where / f"{ctx.config_hash()}.h5"  # named as prepare names it
    write_text_dataset(ctx, out, bodies, meta)
    return out


CASES = [{"tokenizer": "word"}, {"tokenizer": "char", "chunk_chars": "20000"}]
if importlib.util.find_spec("tokenizers"):  # fitted in the driver (as one process fits it)
    CASES.append(pytest.param({"tokenizer": "bpe", "max_vocab": "600", "lowercase": "true"},
                              marks=pytest.mark.slow))


@pytest.mark.parametrize("options", CASES, ids=["word", "char", "bpe"][:len(CASES)])
def test_sharded_gutenberg_equals_serial_cluster_and_unsharded(
        options: dict[str, str], loopback, realdata: Path,  # type: ignore[no-untyped-def]
        tmp_path: Path, scheduler: str) -> None:
    _serve(loopback, _books(realdata))
    args = [a for k, v in options.items() for a in (f"--{k.replace('_', '-')}", v)]
    serial = _fetch(tmp_path / "c1", loopback.base_url, *args)
    timings = last_timings()
    assert timings["executor"] == "this process"
    assert timings["n_shards"] == 6 == timings["shards_run"]  # one book a shard (6 books)
    on_cluster = _fetch(tmp_path / "c2", loopback.base_url, *args, "--scheduler", scheduler)
    assert last_timings()["executor"] == f"the Dask scheduler {scheduler}"
    assert on_cluster.name == serial.name  # the executor is not part of the configuration
    want = _contents(serial)
    assert _contents(on_cluster) == want
    if options["tokenizer"] == "word":  # dlprep's own LocalCluster of 2 processes (slower)
        two = _fetch(tmp_path / "c3", loopback.base_url, *args, "--workers", "2")
        assert last_timings()["executor"] == "a Dask LocalCluster of 2 processes"
        assert two.name == serial.name and _contents(two) == want
    (tmp_path / "ref").mkdir()
    ref = _unsharded(tmp_path / "c4", loopback.base_url, {"ids": IDS, "base_url": "", **options},
                     tmp_path / "ref")
    assert ref.name == serial.name  # the same configuration (hash) as the CLI's
    assert _contents(ref) == want
    with h5py.File(serial, "r") as f:
        ids = f["meta/id"][()].tolist()
        titles = [t.decode() for t in f["meta/title"][()]]
    books = [1342, 11, 12, 13, 14]  # 15 is a copy of 11: dropped as a duplicate
    if options["tokenizer"] == "char":  # chunks of ~20,000 characters: each book several documents
        assert sorted(set(ids), key=ids.index) == books and len(ids) > 30
    else:
        assert ids == books
    assert titles[ids.index(1342)] == "Pride and Prejudice"
    assert titles[ids.index(12)] == "Alicia\u2019s Adventures in Wonderland"


def test_plan_is_ranges_of_the_chosen_ids_whatever_the_workers(tmp_path: Path) -> None:
    ids = [7, *range(5000, 5199), 3]  # 201 books, in collect's (not sorted) order
    plans = []
    for workers in ("1", "2"):
        ctx = _context(find_recipe("gutenberg"), Cache.open(tmp_path), gutenberg,
                       {"ids": "7", "workers": workers}, "books", FetchOptions(), None)
        ctx.collected = gutenberg.Books(ids)
        ctx.files.update({str(i): tmp_path / f"pg{i}.txt" for i in ids})
        plans.append(gutenberg.plan_shards(ctx))
    assert plans[0] == plans[1] and ctx.workers == 2
    assert [len(s.option("ids")) for s in plans[0]] == [13] * 15 + [6]  # ceil(201 / 16) a shard
    assert [i for s in plans[0] for i in s.option("ids")] == ids
    assert [Path(p).name for s in plans[0] for p in s.paths] == [f"pg{i}.txt" for i in ids]
    assert all(Path(p).is_absolute() for s in plans[0] for p in s.paths)
    assert [(s.start, s.end) for s in plans[0][:2]] == [(0, 13), (13, 26)]
    assert [gutenberg.books_per_shard(n) for n in (1, 16, 17, 512, 513, 10**6)] == \
        [1, 1, 2, 32, 32, 32]


def test_bad_book_stops_the_run_and_a_changed_book_starts_over(
        loopback, realdata: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Book 13 is not UTF-8: the run stops on its shard with one line naming the file (bad
    input is not retried) after the four shards before it, and drops the file from the cache.
    Once the server has the right file, its checksum is another input: the rerun starts over
    (nothing resumed from the old manifest) and writes what a fresh run writes."""
    books = _books(realdata)
    _serve(loopback, {**books, 13: b"\xff\xfe not UTF-8 " + books[13]})
    cache = tmp_path / "cache"
    proc = invoke_cli("fetch", "gutenberg", "--mirror", loopback.base_url, "--base-url", "",
                      "--ids", IDS, "--name", "books", "--tokenizer", "word", cache_dir=cache)
    assert proc.returncode == 1
    bad = cache / "raw/gutenberg/books/13/pg13.txt"
    assert proc.stderr.splitlines()[-1] == f"error: {bad} at byte 0: not UTF-8 text (invalid " \
                                           f"start byte)", proc.stderr
    assert "removed it from the cache" in proc.stderr and not bad.exists()  # fetched again
    manifests = list((cache / "prepared" / "books").glob(".*.parts/manifest.jsonl"))
    assert len(manifests) == 1
    done = [json.loads(line)["id"] for line in manifests[0].read_text().splitlines()[1:]]
    assert done == [f"pg-{k:06d}" for k in range(4)]  # 1342, 11, 12, 15 (in plan order here)
    assert not list((cache / "prepared" / "books").glob("*.h5"))
    _serve(loopback, {13: books[13]})
    again = _fetch(cache, loopback.base_url, "--tokenizer", "word")
    assert last_timings()["shards_resumed"] == 0 and last_timings()["shards_run"] == 6
    fresh = _fetch(tmp_path / "fresh", loopback.base_url, "--tokenizer", "word")
    assert again.name == fresh.name  # (a cached book is listed without its URL: "sources")
    assert _contents(again, "sources") == _contents(fresh, "sources")


def test_killed_run_resumes_without_redoing_finished_shards(
        loopback, realdata: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`dlprep fetch gutenberg` over 32 books (16 shards of 2) killed with SIGKILL after some
    shards: the rerun (books now cached) takes exactly the shards the manifest records, runs
    the others, and writes the arrays of an uninterrupted run."""
    pride = (realdata / "gutenberg/pg1342.txt").read_bytes()
    ids = list(range(2000, 2032))
    # four different books, each then repeated: the repeats cost a shard each, but their
    # documents are dropped as duplicates before the vocabulary and the encoding
    _serve(loopback, {i: pride.replace(b"Elizabeth", f"Eliza{i % 4}".encode()) for i in ids})
    cache = tmp_path / "cache"
    args = ["fetch", "gutenberg", "--mirror", loopback.base_url, "--base-url", "", "--ids",
            ",".join(map(str, ids)), "--name", "many", "--tokenizer", "char"]
    manifest = run_and_kill(args, cache, "many", shards=3)
    assert manifest is not None, "the run ended before it could be killed"
    done = finished_shards(manifest)
    assert 3 <= len(done) < 16 and done == [f"pg-{k:06d}" for k in range(len(done))]
    assert not [p for p in (cache / "prepared" / "many").glob("*.h5")
                if not p.name.startswith(".tmp-")]  # no prepared file, only the dead run's temp
    resumed = _fetch_ids(cache, loopback.base_url, args)
    timings = last_timings()
    assert timings["shards_resumed"] == len(done) and timings["shards_run"] == 16 - len(done)
    fresh = _fetch_ids(tmp_path / "fresh", loopback.base_url, args)
    assert last_timings()["shards_resumed"] == 0
    assert resumed.name == fresh.name
    a = _contents(resumed, "sources")  # (a cached book is listed without its URL)
    assert a == _contents(fresh, "sources")
    assert np.frombuffer(a["meta/id"][2], np.int64).tolist() == ids[:4]


def test_one_worker_runs_here_without_dask(loopback, realdata: Path,  # type: ignore[no-untyped-def]
                                           tmp_path: Path) -> None:
    """`dlprep fetch gutenberg` (--workers 1, the default) never imports Dask."""
    _serve(loopback, _books(realdata))
    proc = dask_imports(["--cache-dir", str(tmp_path), "fetch", "gutenberg", "--mirror",
                         loopback.base_url, "--base-url", "", "--ids", "11,12", "-q"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"
    assert list((tmp_path / "prepared" / "gutenberg").glob("*.h5"))

"""Text datasets end to end: the bundled gutenberg-sample, split by document, import-text of
CSV/JSONL (and its errors), the text-emotion recipe through --mirror, dedupe."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from dlprep.cli import main
from dlprep.text.clean import clean_text, strip_gutenberg
from dlprep.text.tokenizers import from_prepared

EMOTIONS = ["empty", "sadness", "enthusiasm", "neutral", "worry", "surprise", "love", "fun",
            "hate", "happiness", "boredom", "relief", "anger"]


def run(capsys, *args: str) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def prepared_path(out: str) -> Path:
    return Path(out.strip().splitlines()[-1])


def read_docs(path: Path) -> tuple[list[str], dict[str, np.ndarray], h5py.File]:
    f = h5py.File(path, "r")
    tok = from_prepared(list(f["vocab"][()]), f.attrs["tokenizer"])
    offsets, tokens = f["offsets"][()], f["tokens"][()]
    docs = [tok.decode(tokens[a:b]) for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
    splits = {k: v[()] for k, v in f["splits"].items()}
    return docs, splits, f


def test_gutenberg_sample_offline_round_trips_both_books(cache_dir: Path, realdata: Path,
                                                         capsys) -> None:  # type: ignore[no-untyped-def]
    rc, out, err = run(capsys, "--offline", "fetch", "gutenberg-sample", "--cache-dir",
                       str(cache_dir))
    assert rc == 0, err
    path = prepared_path(out)
    docs, splits, f = read_docs(path)
    with f:
        assert f.attrs["kind"] == "sequence" and f["tokens"].dtype == np.int32
        assert json.loads(f.attrs["tokenizer"])["type"] == "char"
        assert [v.decode() for v in f["vocab"][:4]] == ["<pad>", "<unk>", "<bos>", "<eos>"]
        ids = [int(v) for v in f["meta/id"][()]]
        titles = {v.decode() for v in f["meta/title"][()]}
        assert f["offsets"][0] == 0 and f["offsets"][-1] == f["tokens"].shape[0]
        assert np.all(np.diff(f["offsets"][()]) > 0)
    assert titles == {"Alice\u2019s Adventures in Wonderland", "Pride and Prejudice"}
    for book_id, name in ((11, "11-0.txt"), (1342, "pg1342.txt")):
        body = strip_gutenberg((realdata / "gutenberg" / name).read_text("utf-8")).body
        # every character is in the train vocabulary here, so the chunks decode exactly
        assert "".join(d for d, i in zip(docs, ids, strict=True) if i == book_id) == \
            clean_text(body)
    assert docs[0].startswith("ALICE\u2019S ADVENTURES IN WONDERLAND")
    assert docs[-1].rstrip().endswith("TOOKS COURT, CHANCERY LANE, LONDON.")
    # split by document: disjoint, covering, every split non-empty
    all_idx = np.concatenate(list(splits.values()))
    assert sorted(splits) == ["test", "train", "val"]
    assert len(all_idx) == len(set(all_idx.tolist())) == len(docs)


def write_emotion_csv(path: Path, rows: int = 130) -> list[tuple[str, str]]:
    lines = ["tweet_id,sentiment,author,content"]
    data = []
    for i in range(rows):
        label = EMOTIONS[i % len(EMOTIONS)]
        text = f"@user{i} feeling {label} today, café #{i} 😀" if i % 5 else \
            f'"quoted, with comma" and ""escaped"" {i}'
        data.append((label, text))
        cell = '"' + text.replace('"', '""') + '"'
        lines.append(f"{1956967341 + i},{label},user{i},{cell}")
    lines.append(lines[1].replace("1956967341", "1956967999"))  # a duplicate tweet text
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return data


def test_text_emotion_through_a_mirror_dir(tmp_path: Path, cache_dir: Path,
                                           capsys) -> None:  # type: ignore[no-untyped-def]
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    data = write_emotion_csv(mirror / "text_emotion.csv")
    rc, out, err = run(capsys, "fetch", "text-emotion", "--cache-dir", str(cache_dir),
                       "--mirror", str(mirror))
    assert rc == 0, err
    docs, splits, f = read_docs(prepared_path(out))
    with f:
        assert [c.decode() for c in f["classes"][()]] == EMOTIONS
        labels = f["labels"][()]
        assert len(docs) == 130  # the duplicate row was dropped
        assert [int(x) for x in f["meta/row"][:3]] == [0, 1, 2]
        assert f["meta/tweet_id"][1].decode() == "1956967342"
        assert f["meta/author"][1].decode() == "user1"
        assert json.loads(f.attrs["tokenizer"])["lowercase"] is True
    assert [EMOTIONS[k] for k in labels[:13]] == [d[0] for d in data[:13]]
    assert docs[1] == data[1][1].lower()
    assert docs[0] == data[0][1].lower()
    assert {len(splits["test"]), len(splits["val"])} == {13}
    assert set(labels[splits["test"]].tolist()) == set(range(13))  # stratified


def test_text_emotion_info_and_missing_upstream_say_what_to_do(cache_dir: Path,
                                                               capsys) -> None:  # type: ignore[no-untyped-def]
    rc, out, _ = run(capsys, "info", "text-emotion", "--cache-dir", str(cache_dir))
    assert rc == 0 and "--mirror DIR" in out and "dlprep import-text FILE --text-column content" \
        " --label-column sentiment" in out
    rc, _, err = run(capsys, "--offline", "fetch", "text-emotion", "--cache-dir", str(cache_dir))
    assert rc == 1 and err.count("\n") == 1
    assert "text_emotion.csv" in err and "dlprep import-text FILE --text-column content " \
        "--label-column sentiment" in err


def test_import_text_jsonl_bpe_round_trip(tmp_path: Path, cache_dir: Path,
                                          capsys) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("tokenizers")
    src = tmp_path / "my_posts.jsonl"
    texts = [f"Post {i}: Grüße aus Köln 🌧️ — día {i}" for i in range(40)]
    src.write_text("\n".join(json.dumps({"body": t, "tag": "a" if i % 2 else "b"})
                             for i, t in enumerate(texts)) + "\n", encoding="utf-8")
    rc, out, err = run(capsys, "import-text", str(src), "--cache-dir", str(cache_dir),
                       "--text-column", "body", "--label-column", "tag", "--tokenizer", "bpe",
                       "--max-vocab", "300")
    assert rc == 0, err
    path = prepared_path(out)
    assert path.parent.name == "my_posts"
    docs, _, f = read_docs(path)
    with f:
        assert [c.decode() for c in f["classes"][()]] == ["a", "b"]
        assert json.loads(f.attrs["tokenizer"])["type"] == "bpe"
    assert docs == texts  # byte-level BPE: exact, even for text outside the train split


def test_import_text_dedupe_option(tmp_path: Path, cache_dir: Path,
                                   capsys) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "dupes.csv"
    src.write_text("text\nsame\nsame\nother\ns\u00e1me\nsa\u0301me\n")  # equal after NFC
    rc, out, _ = run(capsys, "import-text", str(src), "--cache-dir", str(cache_dir),
                     "--text-column", "text", "--tokenizer", "char")
    assert rc == 0 and read_docs(prepared_path(out))[0] == ["same", "other", "s\u00e1me"]
    rc, out, _ = run(capsys, "import-text", str(src), "--cache-dir", str(cache_dir),
                     "--text-column", "text", "--tokenizer", "char", "--dedupe", "false")
    assert rc == 0 and len(read_docs(prepared_path(out))[0]) == 5


@pytest.mark.parametrize("content,args,message", [
    (b"id,text\n1,hello\n2,a,b,c\n3,x\n", (), "malformed CSV: Error tokenizing data. C error: "
     "Expected 2 fields in line 3, saw 4"),
    (b"id,text\n1,hello\n", ("--label-column", "label"), "--label-column 'label' is not a "
     "column; columns are: id, text"),
    (b"id,text\n1,caf\xe9\n", (), "at byte 13: not valid utf-8 text (invalid continuation "
     "byte); pass --encoding latin-1"),
    (b"", (), "empty table"),
    (b"text\nhello, world\nfine\n", (), "at byte 5: malformed CSV: line 2 has 2 fields, the "
     "header 1 (quote texts that contain the delimiter)"),
])
def test_import_text_errors_are_one_clear_line(tmp_path: Path, cache_dir: Path, capsys,  # type: ignore[no-untyped-def]
                                               content: bytes, args: tuple[str, ...],
                                               message: str) -> None:
    src = tmp_path / "tweets.csv"
    src.write_bytes(content)
    rc, out, err = run(capsys, "import-text", str(src), "--cache-dir", str(cache_dir),
                       "--text-column", "text", *args)
    assert rc == 1 and out == ""
    assert err.startswith(f"error: {src}") and err.count("\n") == 1
    assert message in err
    assert not list((cache_dir / "prepared").glob("*/*.h5")) if (cache_dir / "prepared").exists() \
        else True


def test_import_text_latin1_and_bad_jsonl(tmp_path: Path, cache_dir: Path,
                                          capsys) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "latin.csv"
    src.write_bytes(b"text\ncaf\xe9 cr\xe8me\n")
    rc, out, _ = run(capsys, "import-text", str(src), "--cache-dir", str(cache_dir),
                     "--text-column", "text", "--encoding", "latin-1")
    assert rc == 0 and read_docs(prepared_path(out))[0] == ["caf\u00e9 cr\u00e8me"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"text": broken}\n')
    rc, _, err = run(capsys, "import-text", str(bad), "--cache-dir", str(cache_dir),
                     "--text-column", "text")
    assert rc == 1 and f"{bad} at byte 24: line 2: invalid JSON" in err


@pytest.mark.parametrize("encoding,message", [
    ("rot13", "--encoding: 'rot13' is not a text encoding"),
    ("base64", "--encoding: 'base64' is not a text encoding"),
    ("no-such-codec", "--encoding: unknown encoding 'no-such-codec'"),
])
def test_import_text_refuses_a_codec_that_is_not_a_text_encoding(
        tmp_path: Path, cache_dir: Path, capsys, encoding: str,  # type: ignore[no-untyped-def]
        message: str) -> None:
    """``--encoding rot13`` was ``internal error LookupError``; now one line, nothing cached."""
    src = tmp_path / "t.csv"
    src.write_text("text\nhello\nworld\n")
    rc, out, err = run(capsys, "import-text", str(src), "--cache-dir", str(cache_dir),
                       "--text-column", "text", "--encoding", encoding)
    assert rc == 1 and out == "" and err.startswith(f"error: {message}")
    assert err.count("\n") == 1 and "internal error" not in err
    assert not [p for p in cache_dir.rglob("*") if p.is_file() and p.name != ".dlprep-cache"]


def test_loader_decodes_with_the_stored_tokenizer(tmp_path: Path, cache_dir: Path,
                                                  capsys) -> None:  # type: ignore[no-untyped-def]
    """dlprep.load(...).decode goes through text.tokenizers.from_prepared (the loader contract)."""
    import dlprep

    src = tmp_path / "notes.csv"
    texts = ["Grüße, Zoë!", "naïve café", "東京 🎌", "plain ascii", "über-straße"] * 2
    src.write_text("text\n" + "\n".join(f'"{t} {i}"' for i, t in enumerate(texts)) + "\n",
                   encoding="utf-8")
    rc, out, err = run(capsys, "import-text", str(src), "--cache-dir", str(cache_dir),
                       "--text-column", "text", "--tokenizer", "word", "--val-fraction", "0",
                       "--test-fraction", "0")
    assert rc == 0, err
    ds = dlprep.load(str(prepared_path(out)), split="train")
    assert [ds.decode(ds[i][0]) for i in range(len(ds))] == \
        [f"{t} {i}" for i, t in enumerate(texts)]


def test_gutenberg_search_command(loopback, cache_dir: Path,
                                  capsys) -> None:  # type: ignore[no-untyped-def]
    from test_gutenberg import CATALOG_ROWS, catalog_gz

    from dlprep.sources.gutenberg import CATALOG_PATH

    loopback.serve("/" + CATALOG_PATH, catalog_gz(CATALOG_ROWS))
    rc, out, err = run(capsys, "gutenberg-search", "--cache-dir", str(cache_dir), "--mirror",
                       loopback.base_url, "--author", "nietzsche", "--language", "en", "--json")
    assert rc == 0, err
    assert [(r["id"], r["title"]) for r in json.loads(out)] == [
        (4363, "Beyond Good and Evil"), (52190, "Thus Spake Zarathustra")]
    rc, out, _ = run(capsys, "gutenberg-search", "--cache-dir", str(cache_dir), "--offline",
                     "--title", "pride")
    assert rc == 0 and out.split()[0] == "1342" and loopback.requests() == 1  # cached catalog
    rc, _, err = run(capsys, "gutenberg-search", "--cache-dir", str(cache_dir))
    assert rc == 1 and "give --ids, --author" in err

"""X posts: the emoji-label rule, import-posts (JSONL/JSON/CSV and their errors), the
recent-search connector over loopback replaying the real v2 responses (pagination, 429 with
Retry-After and with x-rate-limit-reset, 5xx then OK, malformed JSON, 401, missing token, an
empty result, offline replay), and emoji-labelled sets training the rnn and mlp baselines."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import pytest
from conftest import invoke_cli

from dlprep.text.emoji_labels import canonical_emoji, emoji_label, fold_rare, split_emoji

pytest.importorskip("emoji")

API = "api"  # tests/data/realdata/api
RECENT = "tweets_search_recent_query=Tweepy.response.json"
ALL = "tweets_search_all_query=Tweepy.response.json"
FAMILY = "\U0001F468\u200d\U0001F469\u200d\U0001F467"  # man ZWJ woman ZWJ girl
RAINBOW = "\U0001F3F3\ufe0f\u200d\U0001F308"  # white flag VS16 ZWJ rainbow
TONED_THUMB = "\U0001F44D\U0001F3FD"  # thumbs up + medium skin tone
THUMB = "\U0001F44D"
FRANCE = "\U0001F1EB\U0001F1F7"
HEART, HEART_TEXT = "\u2764\ufe0f", "\u2764"  # fully qualified, and without VS16
JOY, FIRE, PARTY = "\U0001F602", "\U0001F525", "\U0001F389"


# --- the emoji rule ---------------------------------------------------------------------------

@pytest.mark.parametrize("text, stripped, label", [
    (f"Game night with the fam {FAMILY} {FAMILY} {PARTY}", "Game night with the fam", FAMILY),
    (f"Allez les Bleus {FRANCE}{FRANCE} ce soir \u26bd", "Allez les Bleus ce soir", FRANCE),
    (f"nice work {TONED_THUMB} {THUMB} {FIRE}", "nice work", THUMB),  # tones folded: 2 thumbs
    (f"love this {HEART_TEXT} and this {HEART}", "love this and this", HEART),  # one label
    (f"pride {RAINBOW} month {PARTY}", "pride month", RAINBOW),  # a tie: the first wins
    (f"{JOY} {FIRE} {FIRE} {JOY}", "", JOY),  # tie again; nothing but emoji
    ("Top 3 1\ufe0f\u20e3 picks \u00a9 2026 Acme\u2122", "Top 3 picks \u00a9 2026 Acme\u2122",
     "1\ufe0f\u20e3"),  # keycap is an emoji, bare (c) and TM stay text
    ("RT @t6dr1ve: #TwitterBots go away! #Tweepy #A\u2026", None, None),  # a real post
])
def test_emoji_label_takes_whole_sequences(text: str, stripped: str | None,
                                           label: str | None) -> None:
    got_text, got_label = emoji_label(text)
    assert got_label == label
    assert got_text == (text if stripped is None else stripped)


def test_zwj_and_skin_tone_sequences_are_one_emoji() -> None:
    technologist = "\U0001F469\U0001F3FD\u200d\U0001F4BB"  # woman, medium tone, ZWJ, laptop
    post = split_emoji(f"shipping {technologist} at 2am {technologist} {FAMILY}")
    assert post.emoji == ("\U0001F469\u200d\U0001F4BB",) * 2 + (FAMILY,)
    kept = split_emoji(f"shipping {technologist} {TONED_THUMB}", keep_skin_tones=True)
    assert kept.emoji == (technologist, TONED_THUMB) and kept.text == "shipping"
    # a ZWJ sequence outside the RGI list is still one emoji (not a thumb and a fire)
    assert split_emoji(f"hot take {THUMB}\u200d{FIRE}").emoji == (f"{THUMB}\u200d{FIRE}",)
    # a lone skin-tone swatch is removed from the text but is never a label
    assert split_emoji("odd \U0001F3FD swatch").emoji == ()
    assert split_emoji("odd \U0001F3FD swatch").text == "odd swatch"
    assert canonical_emoji("\U0001F3F3\u200d\U0001F308") == RAINBOW  # minimally qualified


def test_fold_rare_drops_or_merges() -> None:
    labels = [JOY, JOY, FIRE, JOY, PARTY, FIRE]
    assert fold_rare(labels, 2, "drop") == ([JOY, JOY, FIRE, JOY, None, FIRE], 1)
    assert fold_rare(labels, 3, "other") == ([JOY, JOY, "other", JOY, "other", "other"], 3)
    assert fold_rare(labels, 1, "drop") == (labels, 0)


# --- import-posts -----------------------------------------------------------------------------

def emoji_posts(real: Path, n_per_class: int = 12) -> list[dict[str, str]]:
    """v2 post objects (the real posts' ids and fields) with texts in three emoji classes, a
    few without emoji and one that is only emoji."""
    ids = [p["id"] for name in (RECENT, ALL)
           for p in json.loads((real / name).read_text("utf-8"))["data"]]
    words = {JOY: ["that was hilarious", "i cannot stop laughing", "best joke today",
                   "my sides hurt", "this meme again"],
             FAMILY: ["sunday lunch with everyone", "the kids made dinner", "family trip",
                      "visiting grandma", "board games at home"],
             FRANCE: ["bonjour paris", "vive la france", "allez les bleus", "le tour de france",
                      "croissants for breakfast"]}
    tails = {JOY: [JOY, f"{JOY}{JOY} {FIRE}"], FAMILY: [FAMILY, f"{FAMILY} {PARTY} {FAMILY}"],
             FRANCE: [f"{FRANCE}{FRANCE}", f"{FRANCE} {HEART}"]}
    posts = []
    for c, emo in enumerate(words):
        for i in range(n_per_class):
            k = c * n_per_class + i
            text = f"{words[emo][i % 5]} number {i} {tails[emo][i % 2]}"
            posts.append({"id": f"{ids[k % len(ids)]}{k}", "text": text,
                          "author_id": f"10{k}", "created_at": f"2026-11-2{c}T10:{i:02d}:00.000Z",
                          "lang": "fr" if emo == FRANCE else "en"})
    posts += [{"id": "900", "text": "no emoji in this one", "lang": "en"},
              {"id": "901", "text": "RT @t6dr1ve: #TwitterBots go away!", "lang": "en"},
              {"id": "902", "text": f"{JOY}{JOY}", "lang": "en"}]
    return posts


def write_jsonl(path: Path, objects: list[dict]) -> Path:  # type: ignore[type-arg]
    path.write_text("".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objects), "utf-8")
    return path


def prepared(stdout: str) -> Path:
    return Path(stdout.strip().splitlines()[-1])


def meta(path: Path) -> dict[str, list[str]]:
    with h5py.File(path, "r") as f:
        return {k: [v.decode() for v in f["meta"][k][()]] for k in f["meta"]}


def test_import_real_responses_as_plain_text(realdata: Path, tmp_path: Path,
                                             cache_dir: Path) -> None:
    """Saved v2 responses, one per line (the real search_recent and search_all pages)."""
    pages = [json.loads((realdata / API / n).read_text("utf-8")) for n in (RECENT, ALL)]
    src = write_jsonl(tmp_path / "pages.jsonl", pages)
    r = invoke_cli("import-posts", str(src), "--name", "tweepy", "--tokenizer", "char",
                   cache_dir=cache_dir)
    assert r.returncode == 0, r.stderr
    path = prepared(r.stdout)
    real_ids = [p["id"] for page in pages for p in page["data"]]
    texts = [p["text"] for page in pages for p in page["data"]]
    with h5py.File(path, "r") as f:
        assert "labels" not in f and f.attrs["kind"] == "sequence"
        n = f["offsets"].shape[0] - 1
        assert json.loads(f.attrs["posts_dropped"]) == {}
    # the three identical retweets are one document (the text pipeline's dedupe)
    kept_ids = meta(path)["id"]
    assert n == len(set(texts)) == 18 and len(kept_ids) == n
    assert kept_ids[0] == "1578516068309794817" and set(kept_ids) <= set(real_ids)


def test_import_posts_emoji_labels(realdata: Path, tmp_path: Path, cache_dir: Path) -> None:
    src = write_jsonl(tmp_path / "posts.jsonl", emoji_posts(realdata / API))
    r = invoke_cli("import-posts", str(src), "--name", "emo", "--emoji-labels",
                   cache_dir=cache_dir)
    assert r.returncode == 0, r.stderr
    assert "emo: 36 of 39 posts kept" in r.stderr
    path = prepared(r.stdout)
    with h5py.File(path, "r") as f:
        classes = [c.decode() for c in f["classes"][()]]
        labels = f["labels"][()]
        assert json.loads(f.attrs["posts_dropped"]) == {"emoji_only": 1, "no_emoji": 2}
        vocab = {v.decode() for v in f["vocab"][()]}
    assert sorted(classes) == sorted([JOY, FAMILY, FRANCE])
    assert sorted(labels.tolist()) == sorted([classes.index(e) for e in (JOY, FAMILY, FRANCE)
                                              for _ in range(12)])
    assert not any(ch in "".join(vocab) for ch in (JOY, FAMILY, FRANCE, PARTY, FIRE, HEART))
    m = meta(path)
    assert set(m) == {"id", "author_id", "created_at", "lang"} and len(m["id"]) == 36
    # each label is the one its post's text was written with
    by_id = {p["id"]: p for p in emoji_posts(realdata / API)}
    for post_id, label in zip(m["id"], labels, strict=True):
        assert classes[label] in by_id[post_id]["text"]
    assert "emoji only 1" in r.stderr and "no emoji 2" in r.stderr


def test_min_count_drops_or_merges_rare_emoji(realdata: Path, tmp_path: Path,
                                              cache_dir: Path) -> None:
    posts = emoji_posts(realdata / API)[:26]  # 12 JOY, 12 FAMILY, 2 FRANCE
    src = write_jsonl(tmp_path / "few.jsonl", posts)
    r = invoke_cli("import-posts", str(src), "--name", "drop", "--emoji-labels",
                   "--min-count", "5", cache_dir=cache_dir)
    assert r.returncode == 0, r.stderr
    with h5py.File(prepared(r.stdout), "r") as f:
        assert [c.decode() for c in f["classes"][()]] == sorted([JOY, FAMILY])
        assert json.loads(f.attrs["posts_dropped"]) == {"rare": 2}
    r = invoke_cli("import-posts", str(src), "--name", "other", "--emoji-labels",
                   "--min-count", "5", "--rare", "other", cache_dir=cache_dir)
    assert r.returncode == 0, r.stderr
    with h5py.File(prepared(r.stdout), "r") as f:
        classes = [c.decode() for c in f["classes"][()]]
        assert sorted(classes) == sorted([JOY, FAMILY, "other"])
        assert (f["labels"][()] == classes.index("other")).sum() == 2
        assert json.loads(f.attrs["posts_dropped"]) == {"folded_into_other": 2}


def test_import_csv_with_text_column_and_label_field(realdata: Path, tmp_path: Path,
                                                     cache_dir: Path) -> None:
    import csv

    posts = emoji_posts(realdata / API)
    src = tmp_path / "export.csv"
    with open(src, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["tweet_id", "content", "lang"])
        for p in posts:
            w.writerow([p["id"], p["text"] + ", with a comma\nand a newline", p["lang"]])
    r = invoke_cli("import-posts", str(src), "--name", "bylang", "--text-column", "content",
                   "--label-field", "lang", cache_dir=cache_dir)
    assert r.returncode == 0, r.stderr
    path = prepared(r.stdout)
    with h5py.File(path, "r") as f:
        assert [c.decode() for c in f["classes"][()]] == ["en", "fr"]
        assert sorted(f["labels"][()].tolist()).count(1) == 12
    ids = meta(path)["id"]  # tweet_id is read as the post id
    assert ids[0] == posts[0]["id"] and len(ids) == len(posts)
    r = invoke_cli("import-posts", str(src), "--name", "fr", "--text-column", "content",
                   "--lang", "fr", cache_dir=cache_dir)
    assert r.returncode == 0, r.stderr
    with h5py.File(prepared(r.stdout), "r") as f:
        assert "labels" not in f and f["offsets"].shape[0] == 13
        assert json.loads(f.attrs["posts_dropped"]) == {"other_lang": len(posts) - 12}


@pytest.mark.parametrize("name, content, message", [
    ("bad.jsonl", '{"id": "1", "text": "ok"}\n{"id": "2", "text": "ok too"}\n{"id": "3", "te\n',
     "bad.jsonl line 3: invalid JSON at column"),
    ("nofield.jsonl", '{"id": "1", "text": "ok"}\n{"id": "2", "full_text": "old v1.1"}\n',
     "nofield.jsonl line 2: field 'text' is missing (fields: full_text, id)"),
    ("notstr.jsonl", '{"id": "1", "text": ["a", "list"]}\n',
     "notstr.jsonl line 1: field 'text' is a list, expected a string"),
    ("page.jsonl", '{"data": [{"id": "1", "text": "ok"}, {"id": "2"}]}\n',
     "page.jsonl line 1 data[1]: field 'text' is missing"),
    ("apierr.jsonl", '{"errors": [{"detail": "Invalid query"}], "meta": {}}\n',
     "apierr.jsonl line 1: the API answered with an error: Invalid query"),
    ("long.csv", 'id,text\n1,fine\n2,"fine, quoted"\n3,not, quoted\n',
     "long.csv line 4: 3 fields, the header has 2"),
    ("nocol.csv", "id,content\n1,hello\n", "nocol.csv line 1: no column 'text' (columns: id, "
                                           "content); pass --text-column"),
    ("bytes.jsonl", '{"text": "ok"}\n{"text": "caf\xe9"}\n', "bytes.jsonl line 2 at byte"),
    ("posts.txt", "hello\n", "posts.txt: cannot tell the format from the suffix '.txt'"),
])
def test_bad_files_are_one_line_errors(tmp_path: Path, cache_dir: Path, name: str,
                                       content: str, message: str) -> None:
    src = tmp_path / name
    src.write_bytes(content.encode("latin-1" if name == "bytes.jsonl" else "utf-8"))
    r = invoke_cli("import-posts", str(src), cache_dir=cache_dir)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert message in r.stderr, r.stderr
    assert not list(cache_dir.rglob("*.h5"))


def test_nothing_left_is_one_line(tmp_path: Path, cache_dir: Path) -> None:
    src = write_jsonl(tmp_path / "plain.jsonl", [{"id": "1", "text": "no emoji"},
                                                  {"id": "2", "text": "none here"}])
    r = invoke_cli("import-posts", str(src), "--emoji-labels", cache_dir=cache_dir)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1] == ("error: dataset plain: no post left of 2 "
                                                 "(2 no emoji)")
    r = invoke_cli("import-posts", str(src), "--emoji-labels", "--label-field", "lang",
                   cache_dir=cache_dir)
    assert r.returncode == 1 and "give one" in r.stderr


@pytest.mark.parametrize("family", ["rnn", "mlp"])
def test_emoji_labelled_posts_train_a_baseline(realdata: Path, tmp_path: Path,
                                               cache_dir: Path, family: str) -> None:
    pytest.importorskip("torch")
    src = write_jsonl(tmp_path / "posts.jsonl", emoji_posts(realdata / API))
    r = invoke_cli("import-posts", str(src), "--name", "emoji", "--emoji-labels",
                   cache_dir=cache_dir)
    assert r.returncode == 0, r.stderr
    t = invoke_cli("train-baseline", family, "emoji", "--epochs", "1", "--max-batches", "2",
                   "--threads", "1", "--device", "cpu", "--out", str(tmp_path / family),
                   cache_dir=cache_dir)
    assert t.returncode == 0, t.stderr
    m = json.loads((tmp_path / family / "metrics.json").read_text())
    assert m["metric"] == "accuracy" and 0 <= m["final"]["accuracy"] <= 1

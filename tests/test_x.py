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


def test_import_a_saved_response_and_a_list(realdata: Path, tmp_path: Path,
                                            cache_dir: Path) -> None:
    """A .json file: the real search_all response as saved, and a list of its posts."""
    src = tmp_path / "all.json"
    src.write_bytes((realdata / API / ALL).read_bytes())
    r = invoke_cli("import-posts", str(src), "--val-fraction", "0", "--test-fraction", "0",
                   cache_dir=cache_dir)
    assert r.returncode == 0, r.stderr
    data = json.loads(src.read_text("utf-8"))["data"]
    ids = meta(prepared(r.stdout))["id"]
    assert ids == [p["id"] for p in data if p["id"] not in ("1578520573914718208",
                                                            "1578519902427619328")]
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps(data, indent=2))
    r = invoke_cli("import-posts", str(listed), "--val-fraction", "0", "--test-fraction", "0",
                   cache_dir=cache_dir)
    assert r.returncode == 0, r.stderr
    assert meta(prepared(r.stdout))["id"] == ids


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
    ("null.jsonl", '{"id": "1", "text": "ok"}\n{"id": "2", "text": null}\n',
     "null.jsonl line 2: field 'text' is null, expected a string"),
    ("array.jsonl", '["not", "an", "object"]\n',
     "array.jsonl line 1: expected a post object, got a list"),
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
    ("cut.json", '{"data": [\n  {"id": "1", "text": "a"},\n  {"id": "2",\n', "cut.json line 4: "
     "invalid JSON at column 1"),
    ("scalar.json", '"just a string"', "scalar.json: expected an X API response"),
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


# --- fetch x: the API v2 recent search over loopback --------------------------------------------

TOKEN = "xBearer-7e2c19d4-AAAAdistinctiveTOKENzz"
SEARCH = "/2/tweets/search/recent"
TOKEN1 = "b26v89c19zqg8o3fpzbn1e0ffhxjiofzw6po136rvbnul"  # next_token of the real recent page
TOKEN2 = "b26v89c19zqg8o3fpzbn1e0frnrh1hac71cvjb7ddu8ot"  # next_token of the real all page
EMPTY = b'{"meta":{"result_count":0}}'


class FakeTime:
    """An injectable clock whose sleep advances it (records every wait)."""

    def __init__(self, start: float = 1_665_183_000.0) -> None:
        self.now = start
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(round(seconds, 3))
        self.now += seconds


@pytest.fixture
def token_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("X_BEARER_TOKEN", TOKEN)
    monkeypatch.setenv("DLPREP_SECRETS", str(tmp_path / "no-secrets.toml"))


def serve_pages(loopback, pages: dict[str | None, bytes], **route: object):  # type: ignore[no-untyped-def]
    """Serve ``pages[next_token]`` at the search path (None: the first page)."""
    from urllib.parse import parse_qs

    def pick(_n: int) -> None:
        query = parse_qs(loopback.log[-1].query)
        token = query.get("next_token", [None])[0]
        loopback.route(SEARCH).body = pages.get(token, b'{"errors":[{"detail":"bad token"}]}')

    return loopback.serve(SEARCH, pages[None], content_type="application/json",
                          on_request=pick, **route)


def fetch_x(loopback, cache_dir: Path, fake: FakeTime, offline: bool = False,  # type: ignore[no-untyped-def]
            **options: object) -> Path:
    from dlprep.cache import Cache
    from dlprep.fetch.http import RetryPolicy
    from dlprep.fetch.options import FetchOptions
    from dlprep.prepare.core import prepare
    from dlprep.recipes import find_recipe

    retry = RetryPolicy(attempts=4, jitter=0.0, sleep=fake.sleep, clock=fake.clock)
    opts = {"query": "Tweepy", "api_base": loopback.url("/2"), "tokenizer": "char",
            "val_fraction": 0.0, "test_fraction": 0.0, **options}
    return prepare(find_recipe("x"), Cache.open(cache_dir), options=opts,
                   fetch=FetchOptions(retry=retry, offline=offline, progress=False))


def real_pages(realdata: Path) -> dict[str | None, bytes]:
    return {None: (realdata / API / RECENT).read_bytes(), TOKEN1: (realdata / API / ALL)
            .read_bytes(), TOKEN2: EMPTY}


def queries(loopback) -> list[dict[str, list[str]]]:  # type: ignore[no-untyped-def]
    from urllib.parse import parse_qs

    return [parse_qs(e.query) for e in loopback.requests_for(SEARCH)]


def test_pagination_follows_next_token(realdata: Path, cache_dir: Path, loopback,  # type: ignore[no-untyped-def]
                                       token_env: None) -> None:
    serve_pages(loopback, real_pages(realdata))
    fake = FakeTime()
    path = fetch_x(loopback, cache_dir, fake, max_posts=25)
    qs = queries(loopback)
    assert [q.get("next_token") for q in qs] == [None, [TOKEN1], [TOKEN2]]
    assert all(q["query"] == ["Tweepy"] and q["max_results"] == ["25"] and
               q["tweet.fields"] == ["author_id,created_at,lang"] for q in qs)
    assert all(e.headers["Authorization"] == f"Bearer {TOKEN}"
               for e in loopback.requests_for(SEARCH))
    assert fake.waits == [2.0, 2.0]  # one request every 2 s (app-only: 450 per 15 min)
    ids = [p["id"] for name in (RECENT, ALL)
           for p in json.loads((realdata / API / name).read_text())["data"]]
    kept = meta(path)["id"]
    assert kept == [i for i in ids if i not in ("1578520573914718208", "1578519902427619328")]
    with h5py.File(path, "r") as f:
        assert f.attrs["recipe"] == "x" and "labels" not in f
        assert TOKEN not in json.dumps({k: str(v) for k, v in f.attrs.items()})
    # the token is in no cached file, no file name
    for p in cache_dir.rglob("*"):
        assert TOKEN not in str(p)
        if p.is_file():
            assert TOKEN.encode() not in p.read_bytes()


def test_max_posts_stops_paging(realdata: Path, cache_dir: Path, loopback,  # type: ignore[no-untyped-def]
                                token_env: None) -> None:
    serve_pages(loopback, real_pages(realdata))
    path = fetch_x(loopback, cache_dir, FakeTime(), max_posts=15)
    assert loopback.requests(SEARCH) == 2 and queries(loopback)[0]["max_results"] == ["15"]
    assert len(meta(path)["id"]) == 15  # page 2 cut after its first 5 posts (one RT)
    # fewer than the API's minimum of 10 per page: ask for 10, keep 3
    path = fetch_x(loopback, cache_dir, FakeTime(), max_posts=3, query="Tweepy -is:retweet")
    assert queries(loopback)[-1]["max_results"] == ["10"] and len(meta(path)["id"]) == 3


def test_offline_replays_without_token(realdata: Path, cache_dir: Path, loopback,  # type: ignore[no-untyped-def]
                                       token_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    serve_pages(loopback, real_pages(realdata))
    first = fetch_x(loopback, cache_dir, FakeTime(), max_posts=25)
    sent = loopback.requests()
    monkeypatch.delenv("X_BEARER_TOKEN")
    r = invoke_cli("--offline", "fetch", "x", "--query", "Tweepy", "--api-base",
                   loopback.url("/2"), "--max-posts", "25", "--tokenizer", "char",
                   "--val-fraction", "0", "--test-fraction", "0", cache_dir=cache_dir)
    assert r.returncode == 0, r.stderr
    assert prepared(r.stdout) == first and loopback.requests() == sent
    r = invoke_cli("--offline", "fetch", "x", "--query", "Tweepy cats", "--api-base",
                   loopback.url("/2"), cache_dir=cache_dir)
    assert r.returncode == 1 and "not in the cache; run once online" in r.stderr


def test_real_cassette_with_its_headers(realdata: Path, cache_dir: Path, loopback,  # type: ignore[no-untyped-def]
                                        token_env: None) -> None:
    """The recorded exchange itself: gzip body, x-rate-limit-* and api-version headers."""
    yaml = pytest.importorskip("yaml")
    cassette = yaml.safe_load((realdata / API / "test_client_search_recent_tweets.yaml")
                              .read_text())
    resp = cassette["interactions"][0]["response"]
    headers = {k: v[0] for k, v in resp["headers"].items()
               if k in ("content-encoding", "api-version", "x-access-level") or
               k.startswith("x-rate-limit")}
    loopback.serve(SEARCH, resp["body"]["string"], headers=headers,
                   content_type=resp["headers"]["content-type"][0])
    path = fetch_x(loopback, cache_dir, FakeTime(), max_posts=10)
    data = json.loads((realdata / API / RECENT).read_text())["data"]
    assert meta(path)["id"] == [p["id"] for p in data] and loopback.requests(SEARCH) == 1


def test_rate_limit_used_up_waits_for_the_reset(realdata: Path, cache_dir: Path, loopback,  # type: ignore[no-untyped-def]
                                                token_env: None) -> None:
    fake = FakeTime()
    serve_pages(loopback, real_pages(realdata), headers={
        "x-rate-limit-limit": "450", "x-rate-limit-remaining": "0",
        "x-rate-limit-reset": str(int(fake.now) + 300)})
    fetch_x(loopback, cache_dir, fake, max_posts=25)
    assert fake.waits[:1] == [300.0] and loopback.requests(SEARCH) == 3


@pytest.mark.parametrize("fault, first, backoff", [
    ({"fail_status": 429, "retry_after": "7"}, 7.0, 7.0),
    ({"fail_status": 429, "fail_headers": {"x-rate-limit-remaining": "0",
                                           "x-rate-limit-reset": "1665183120"}}, 120.0, 120.0),
    ({"fail_status": 503, "fail_first": 2}, 1.0, 1.0 + 2.0),  # exponential backoff
    ({"fail_status": 500, "fail_first": 1}, 1.0, 1.0),
])
def test_busy_answers_are_waited_out(realdata: Path, cache_dir: Path, loopback,  # type: ignore[no-untyped-def]
                                     token_env: None, fault: dict, first: float,  # type: ignore[type-arg]
                                     backoff: float) -> None:
    fake = FakeTime()
    start = fake.now
    serve_pages(loopback, {None: (realdata / API / RECENT).read_bytes(), TOKEN1: EMPTY},
                **{"fail_first": 1, **fault})
    path = fetch_x(loopback, cache_dir, fake, max_posts=25)
    assert fake.waits[0] == first
    # the retries' waits, then 2 s before the second page (the 2 s between requests overlap
    # the shorter backoffs)
    assert fake.now - start == max(backoff, 2.0 * fault.get("fail_first", 1)) + 2.0
    assert loopback.requests(SEARCH) == fault.get("fail_first", 1) + 2
    assert len(meta(path)["id"]) == 10


def test_malformed_json_is_one_line_and_not_cached(cache_dir: Path, loopback,  # type: ignore[no-untyped-def]
                                                   token_env: None) -> None:
    loopback.serve(SEARCH, b'{"data": [{"id": "1", "text": "cut', content_type="application/json")
    r = invoke_cli("fetch", "x", "--query", "cats", "--api-base", loopback.url("/2"),
                   cache_dir=cache_dir)
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert "malformed JSON from http://127.0.0.1:" in r.stderr and TOKEN not in r.stderr
    assert not [p for p in cache_dir.rglob("*") if p.is_file() and p.suffix == ".json"]


def test_error_document_is_one_line(cache_dir: Path, loopback, token_env: None) -> None:  # type: ignore[no-untyped-def]
    body = (b'{"errors":[{"parameters":{"query":["(cats"]},"message":"There were errors '
            b'processing your request: missing closing parenthesis"}],"title":"Invalid Request",'
            b'"detail":"One or more parameters to your request was invalid.","type":'
            b'"https://api.twitter.com/2/problems/invalid-request"}')
    loopback.serve(SEARCH, b"", fail_first=9, fail_status=400, fail_body=body)
    r = invoke_cli("fetch", "x", "--query", "(cats", "--api-base", loopback.url("/2"),
                   cache_dir=cache_dir)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and loopback.requests(SEARCH) == 1
    assert "HTTP 400" in r.stderr and "missing closing parenthesis" in r.stderr
    # an error document in a 200 answer (fake time: the 2 s between requests are not slept)
    from dlprep.errors import DlprepError

    loopback.serve(SEARCH, b'{"errors":[{"detail":"Authorization failed"}]}')
    with pytest.raises(DlprepError, match="the API answered with an error: Authorization "
                                          "failed"):
        fetch_x(loopback, cache_dir, FakeTime(), query="cats")
    assert not [p for p in cache_dir.rglob("*.json") if p.is_file()]  # not cached


def test_wrong_token_is_one_line_without_retries(cache_dir: Path, loopback,  # type: ignore[no-untyped-def]
                                                 token_env: None) -> None:
    loopback.serve(SEARCH, b"", fail_first=99, fail_status=401, fail_body=(
        b'{"title":"Unauthorized","type":"about:blank","status":401,"detail":"Unauthorized"}'))
    r = invoke_cli("fetch", "x", "--query", "cats", "--api-base", loopback.url("/2"),
                   cache_dir=cache_dir)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and loopback.requests(SEARCH) == 1
    assert "X refused the key (HTTP 401)" in r.stderr and "check X_BEARER_TOKEN" in r.stderr
    assert TOKEN not in r.stderr + r.stdout


def test_missing_token_is_named_before_any_request(cache_dir: Path, loopback,  # type: ignore[no-untyped-def]
                                                   token_env: None,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("X_BEARER_TOKEN")
    loopback.serve(SEARCH, EMPTY)
    r = invoke_cli("fetch", "x", "--query", "cats", "--api-base", loopback.url("/2"),
                   cache_dir=cache_dir)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and loopback.requests() == 0
    assert "X_BEARER_TOKEN" in r.stderr


@pytest.mark.parametrize("args, message", [
    (["--query", "x" * 513], "--query is 513 characters; recent search takes at most 512"),
    ([], "x: give --query QUERY"),
    (["--query", "cats", "--max-posts", "0"], "--max-posts must be >= 1"),
])
def test_bad_queries_are_refused_before_any_request(cache_dir: Path, loopback, token_env: None,  # type: ignore[no-untyped-def]
                                                    args: list[str], message: str) -> None:
    r = invoke_cli("fetch", "x", *args, "--api-base", loopback.url("/2"), cache_dir=cache_dir)
    assert r.returncode == 1 and message in r.stderr and loopback.requests() == 0


def test_empty_result_is_one_line(cache_dir: Path, loopback, token_env: None) -> None:  # type: ignore[no-untyped-def]
    loopback.serve(SEARCH, EMPTY, content_type="application/json")
    r = invoke_cli("fetch", "x", "--query", "nothing matches this", "--api-base",
                   loopback.url("/2"), cache_dir=cache_dir)
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert "found no posts (recent search covers the last 7 days)" in r.stderr


def test_fetch_x_emoji_labels_train_rnn(realdata: Path, cache_dir: Path, loopback,  # type: ignore[no-untyped-def]
                                        token_env: None, tmp_path: Path) -> None:
    posts = emoji_posts(realdata / API)
    body = json.dumps({"data": posts, "meta": {"result_count": len(posts)}}).encode()
    loopback.serve(SEARCH, body, content_type="application/json")
    r = invoke_cli("fetch", "x", "--query", "lang:en has:emoji", "--api-base",
                   loopback.url("/2"), "--emoji-labels", "--min-count", "2", "--name", "emo",
                   cache_dir=cache_dir)
    assert r.returncode == 0, r.stderr
    path = prepared(r.stdout)
    with h5py.File(path, "r") as f:
        assert sorted(c.decode() for c in f["classes"][()]) == sorted([JOY, FAMILY, FRANCE])
        assert f["labels"].shape == (36,)
        assert json.loads(f.attrs["posts_dropped"]) == {"emoji_only": 1, "no_emoji": 2}
    pytest.importorskip("torch")
    t = invoke_cli("train-baseline", "rnn", "emo", "--epochs", "1", "--max-batches", "2",
                   "--threads", "1", "--device", "cpu", "--out", str(tmp_path / "run"),
                   cache_dir=cache_dir)
    assert t.returncode == 0, t.stderr
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["metric"] == "accuracy"


def test_without_the_emoji_library(tmp_path: Path, cache_dir: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Plain imports need no emoji library; --emoji-labels names the extra to install."""
    import sys

    monkeypatch.setitem(sys.modules, "emoji", None)  # `import emoji` now raises ImportError
    src = write_jsonl(tmp_path / "p.jsonl", [{"id": "1", "text": f"party {PARTY}"},
                                              {"id": "2", "text": "no emoji"}])
    r = invoke_cli("import-posts", str(src), "--emoji-labels", cache_dir=cache_dir)
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert "pip install 'dlprep[api]'" in r.stderr
    r = invoke_cli("import-posts", str(src), "--test-fraction", "0", "--val-fraction", "0",
                   cache_dir=cache_dir)
    assert r.returncode == 0, r.stderr

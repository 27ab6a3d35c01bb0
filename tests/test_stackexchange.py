"""`fetch stackexchange`: real Posts.xml samples (both tag formats) streamed out of .7z archives
(7z program, libarchive, py7zr) or given plain, the Internet Archive item served over loopback,
question/answer pairs checked against the source rows, bad inputs, and a baseline trained on
the result."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import invoke_cli

from dlprep.errors import DlprepError, ExtractionError, FormatError
from dlprep.formats.sevenzip import choose_decoder, is_seven_zip, seven_zip_program
from dlprep.formats.stackexchange import (
    ReadReport,
    iter_posts,
    parse_tags,
    posts_chunks,
    sieve_rows,
)
from dlprep.limits import ExtractLimits
from dlprep.sources.stackexchange import check_site, find_site_file, newest_item
from dlprep.text.html_text import html_to_text
from dlprep.text.tokenizers import from_prepared

py7zr = pytest.importorskip("py7zr")

NEW = "stackexchange/datascience.meta.stackexchange.com-Posts.xml"  # |a|b| tags, 2024 dump
OLD = "stackexchange/cstheory.meta.stackexchange.com-Posts-head.xml"  # <a><b> tags, 2019
SITE = "datascience.meta.stackexchange.com"
ITEM = "stackexchange_20250930"


def _seven_zip(dest: Path, members: dict[str, bytes]) -> Path:
    with py7zr.SevenZipFile(dest, "w") as z:
        for name, data in members.items():
            z.writestr(data, name)
    return dest


def _rows(path: Path) -> dict[int, dict[str, str]]:
    """The source rows by Id, read independently of dlprep (ElementTree)."""
    return {int(el.get("Id")): dict(el.attrib) for el in ET.parse(path).getroot()
            if el.tag == "row"}


def _fetch(cache: Path, *args: str) -> tuple[int, str, str]:
    r = invoke_cli("fetch", "stackexchange", *args, cache_dir=cache)
    return r.returncode, r.stdout, r.stderr


def _h5(stdout: str) -> Path:
    return Path(stdout.strip().splitlines()[-1])


def _no_output(cache: Path) -> None:
    assert not list(cache.glob("prepared/**/*.h5")), "a prepared file was left behind"
    assert not list(cache.glob("prepared/**/.tmp*")) and not list(
        cache.glob("prepared/**/*.questions")), "a half-written file was left behind"


# --- the format ---------------------------------------------------------------------------

def test_both_tag_formats_and_row_counts(realdata: Path) -> None:
    assert parse_tags("<visa><schengen-visa>") == ("visa", "schengen-visa")
    assert parse_tags("|visa|schengen-visa|") == ("visa", "schengen-visa")
    assert parse_tags("") == () and parse_tags("|c++|") == ("c++",)
    for name, questions, answers, first in ((NEW, 257, 341, (6, ("feature-request",
                                                                  "status-completed"))),
                                            (OLD, 31, 69, (1, ("discussion", "7-essential",
                                                               "names")))):
        path = realdata / name
        report = ReadReport()
        posts = list(iter_posts(posts_chunks(path), path, report=report))
        src = _rows(path)
        assert report.rows == len(src) and report.bad_rows == 0
        assert (report.questions, report.answers) == (questions, answers)
        assert len(posts) == questions + answers  # tag wikis (types 4, 5) left out
        by_id = {p.id: p for p in posts}
        assert by_id[first[0]].tags == first[1]
        for p in posts:  # every field as the XML says (ElementTree decodes the same escapes)
            row = src[p.id]
            assert p.body == row["Body"] and p.title == row.get("Title", "")
            assert p.score == int(row["Score"]) and p.post_type == int(row["PostTypeId"])
            assert p.accepted_answer_id == (int(row["AcceptedAnswerId"]) if
                                            "AcceptedAnswerId" in row else None)
            assert p.license == row.get("ContentLicense", "")
    assert {p.license for p in iter_posts(posts_chunks(realdata / NEW), NEW)} == {
        "CC BY-SA 3.0", "CC BY-SA 4.0"}


def test_html_bodies_become_text(realdata: Path) -> None:
    posts = {p.id: p for p in iter_posts(posts_chunks(realdata / OLD), OLD)}
    text = html_to_text(posts[17].body)
    assert "- What does the theorem of Rice help to prove?\n- Minimum spanning tree" in text
    assert text.startswith("I was waiting to get some examples") and "<" not in text
    assert html_to_text("<p>a &lt; b &amp; c<br>d</p><pre><code>x  = 1\n  y\n</code></pre>"
                        "<script>x()</script><!-- c -->end") == "a < b & c\nd\n\nx  = 1\n  y\n\nend"
    for p in posts.values():
        out = html_to_text(p.body)
        assert "&lt;" not in out and "<p>" not in out and "</a>" not in out


# --- 7z decoders ------------------------------------------------------------------------

FAKE_7Z = '''#!{python}
"""A stand-in for the 7z program (l -slt / x -so), backed by py7zr."""
import os, sys
import py7zr
from py7zr.io import BytesIOFactory
args = sys.argv[1:]
with open(os.environ["FAKE7Z_LOG"], "a") as log:
    log.write(" ".join(args) + "\\n")
try:
    z = py7zr.SevenZipFile(args[-1] if args[0] == "l" else args[-2])
    infos = z.list()
except Exception as exc:
    print("ERROR: Can not open the file as archive: " + str(exc), file=sys.stderr)
    sys.exit(2)
if args[0] == "l":
    print("7-Zip stand-in\\n\\nListing archive: x\\n\\n--\\nPath = x\\nType = 7z\\n\\n----------")
    for i in infos:
        print(f"Path = {{i.filename}}\\nFolder = {{'+' if i.is_directory else '-'}}\\n"
              f"Size = {{i.uncompressed}}\\n")
    sys.exit(0)
try:
    f = BytesIOFactory(1 << 30)
    z.extract(targets=[args[-1]], factory=f)
    sys.stdout.buffer.write(f.get(args[-1]).read() if args[-1] in f.products else b"")
except Exception as exc:
    print("ERROR: Data Error : " + str(exc), file=sys.stderr)
    sys.exit(2)
'''


@pytest.fixture
def fake_7z(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `7z` program on PATH (a py7zr stand-in: no 7-Zip binary on this machine) whose
    calls are logged to the returned file."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    prog = bindir / "7z"
    prog.write_text(FAKE_7Z.format(python=sys.executable))
    prog.chmod(prog.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "7z.log"
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKE7Z_LOG", str(log))
    return log


def test_decoder_choice() -> None:
    none = lambda name: None  # noqa: E731
    only_7za = lambda name: "/opt/bin/7za" if name == "7za" else None  # noqa: E731
    assert seven_zip_program(none) is None and seven_zip_program(only_7za) == "/opt/bin/7za"
    assert choose_decoder(which=only_7za) == ("7z", "/opt/bin/7za")
    assert choose_decoder(which=none, has_libarchive=lambda: True) == ("libarchive", None)
    assert choose_decoder(which=none, has_libarchive=lambda: False) == ("py7zr", None)
    assert choose_decoder("py7zr", which=only_7za) == ("py7zr", None)
    with pytest.raises(DlprepError, match="--decoder 7z: no 7-Zip program on PATH"):
        choose_decoder("7z", which=none)
    with pytest.raises(DlprepError, match="needs a 7z program, libarchive-c or py7zr"):
        choose_decoder(which=none, has_libarchive=lambda: False, has_py7zr=lambda: False)
    with pytest.raises(DlprepError, match="is not one of"):
        choose_decoder("unrar")


@pytest.mark.parametrize("decoder", ["7z", "libarchive", "py7zr"])
def test_every_decoder_streams_the_member_bytes(decoder: str, realdata: Path, tmp_path: Path,
                                                fake_7z: Path) -> None:
    if decoder == "libarchive":
        pytest.importorskip("libarchive")
    data = (realdata / NEW).read_bytes()
    archive = _seven_zip(tmp_path / f"{SITE}.7z", {"Badges.xml": b"<badges/>\n",
                                                   "Posts.xml": data,
                                                   "Users.xml": b"<users/>\n"})
    assert is_seven_zip(archive)
    chunks = list(posts_chunks(archive, decoder=decoder))
    assert b"".join(chunks) == data
    calls = fake_7z.read_text().splitlines() if fake_7z.exists() else []
    if decoder == "7z":  # the program on PATH was used, listing first, then x -so
        assert calls[0].startswith("l -slt ") and calls[1].startswith("x -so ")
        assert calls[1].endswith(" Posts.xml")
        assert choose_decoder()[0] == "7z"  # auto takes the program when there is one
    else:
        assert calls == []
    # stopping early closes the stream (program killed / thread stopped) without an error
    it = iter_posts(posts_chunks(archive, decoder=decoder), archive)
    assert next(it).id == 6
    it.close()


@pytest.mark.parametrize("decoder", ["7z", "libarchive", "py7zr"])
def test_bad_archives_one_line(decoder: str, realdata: Path, tmp_path: Path,
                               fake_7z: Path) -> None:
    if decoder == "libarchive":
        pytest.importorskip("libarchive")
    data = (realdata / NEW).read_bytes()
    good = _seven_zip(tmp_path / "good.7z", {"Posts.xml": data}).read_bytes()
    cut = tmp_path / "cut.7z"
    cut.write_bytes(good[: len(good) // 2])
    with pytest.raises(FormatError, match=r"cut\.7z: (not a readable 7z archive|could not "
                                          r"decompress).*truncated or damaged download"):
        b"".join(posts_chunks(cut, decoder=decoder))
    other = _seven_zip(tmp_path / "users.7z", {"Users.xml": b"<users/>\n",
                                               "Tags.xml": b"<tags/>\n"})
    with pytest.raises(FormatError, match=r"users\.7z: no Posts\.xml in this archive "
                                          r"\(members: .*Users\.xml"):
        b"".join(posts_chunks(other, decoder=decoder))
    small = ExtractLimits(max_total_bytes=100_000)  # the declared size is refused up front
    with pytest.raises(ExtractionError, match="declares 992,075 bytes.*decompression bomb"):
        next(posts_chunks(tmp_path / "good.7z", decoder=decoder, limits=small))


def test_plain_posts_limit_and_invalid_characters(realdata: Path, tmp_path: Path) -> None:
    data = (realdata / NEW).read_bytes()
    with pytest.raises(ExtractionError, match="decompression bomb"):
        import bz2
        packed = tmp_path / "Posts.xml.bz2"
        packed.write_bytes(bz2.compress(data))
        b"".join(posts_chunks(packed, limits=ExtractLimits(max_total_bytes=500_000)))
    bad = tmp_path / "Posts.xml"
    lines = data.split(b"\n")
    assert b"Like on math" in lines[2]
    lines[2] = lines[2].replace(b"Like on math", b"Like\x01on math")  # XML 1.0 forbids it
    bad.write_bytes(b"\n".join(lines))
    with pytest.raises(FormatError, match=r"Posts\.xml: not well-formed XML at line 3, column "
                                          r"\d+: not well-formed \(invalid token\): an invalid "
                                          r"character"):
        list(iter_posts(posts_chunks(bad), bad))
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError, match="the file ends early"):
        list(iter_posts(posts_chunks(bad), bad))
    bad.write_bytes(b'<?xml version="1.0"?>\n<users>\n  <row Id="1" />\n</users>\n')
    with pytest.raises(FormatError, match=r"root element <users>, expected <posts>"):
        list(iter_posts(posts_chunks(bad), bad))


@pytest.mark.parametrize("name", [NEW, OLD])
def test_sieve_drops_unused_rows_with_the_same_posts_and_counts(name: str,
                                                                realdata: Path) -> None:
    """A question dataset does not parse the answers: the same posts and counts as parsing
    every row, the answers really dropped before expat, and every newline kept."""
    path = realdata / name
    data = path.read_bytes()
    counts: Counter[int] = Counter()
    sieved = b"".join(sieve_rows(posts_chunks(path), {2, 3, 4, 5, 6, 7, 8, 9}, counts))
    root = ET.fromstring(data)
    by_type = Counter(int(r.get("PostTypeId") or 0) for r in root.iter("row"))
    assert counts[2] == by_type[2] > 0
    assert sum(counts.values()) == sum(n for t, n in by_type.items() if t != 1)
    assert sieved.count(b"\n") == data.count(b"\n") and len(sieved) < len(data) * 0.8
    assert [r.get("Id") for r in ET.fromstring(sieved).iter("row")] == \
        [r.get("Id") for r in root.iter("row") if r.get("PostTypeId") == "1"]
    for types in ({1}, {1, 2}):
        fast, slow = ReadReport(), ReadReport()
        got = list(iter_posts(posts_chunks(path), path, types=frozenset(types), report=fast))
        want = list(iter_posts(posts_chunks(path), path, types=frozenset(types), report=slow,
                               sieve=False))
        assert got == want and fast == slow
        assert fast.rows == len(list(root.iter("row"))) and fast.answers == by_type[2]


def _damage(data: bytes, post_type: str, old: bytes, new: bytes, nth: int = 3
            ) -> tuple[bytes, int]:
    """``data`` with ``old`` replaced by ``new`` in the ``nth`` row of ``post_type`` that
    holds it; and that row's line number."""
    lines = data.split(b"\n")
    seen = 0
    for i, line in enumerate(lines):
        if f'PostTypeId="{post_type}"'.encode() in line and old in line:
            seen += 1
            if seen == nth:
                lines[i] = line.replace(old, new, 1)
                return b"\n".join(lines), i + 1
    raise AssertionError(f"no row of type {post_type} with {old!r}")


@pytest.mark.parametrize("post_type, old, new", [
    ("2", b"&lt;p&gt;", b"&lt;p\x01&gt;"),      # a control character
    ("2", b"&lt;p&gt;", b"&lt;p\xff&gt;"),      # not UTF-8
    ("2", b'" Score="', b' Score="'),              # a quote lost
    ("2", b"&lt;p&gt;", b"<p>"),                   # markup inside a value
    ("2", b"&lt;p&gt;", b"&bogus;"),               # an undefined entity: left to expat
    ("1", b"&lt;p&gt;", b"&bogus;"),               # in a question after dropped answers
])
def test_sieve_leaves_damaged_rows_to_expat(post_type: str, old: bytes, new: bytes,
                                            realdata: Path, tmp_path: Path) -> None:
    """Damage in a row the question dataset does not use is still one line naming the file
    and the right line (the sieve keeps every newline), as without the sieve."""
    data, line = _damage((realdata / NEW).read_bytes(), post_type, old, new, nth=40)
    bad = tmp_path / "Posts.xml"
    bad.write_bytes(data)
    if old == b"&lt;p&gt;" and new == b"&bogus;" and post_type == "2":
        # an entity is not among the sieve's byte checks: such a row is dropped unparsed
        # (its bytes are never used); the questions are still all there
        got = list(iter_posts(posts_chunks(bad), bad, types=frozenset({1})))
        assert len(got) == len(list(iter_posts(posts_chunks(realdata / NEW), realdata / NEW,
                                               types=frozenset({1}))))
        with pytest.raises(FormatError, match=rf"at line {line}, column"):
            list(iter_posts(posts_chunks(bad), bad, types=frozenset({1, 2})))
        return
    for types in ({1}, {1, 2}):
        with pytest.raises(FormatError, match=rf"Posts\.xml: not well-formed XML at line "
                                              rf"{line}, column"):
            list(iter_posts(posts_chunks(bad), bad, types=frozenset(types)))


# --- the builder, local dumps -------------------------------------------------------------

def test_dump_7z_and_plain_posts_give_the_same_questions(realdata: Path, tmp_path: Path) -> None:
    posts = realdata / NEW
    archive = _seven_zip(tmp_path / f"{SITE}.7z", {"Posts.xml": posts.read_bytes(),
                                                   "Users.xml": b"<users/>\n"})
    outs = []
    for i, dump in enumerate((archive, posts)):
        rc, out, err = _fetch(tmp_path / f"c{i}", "--dump", str(dump), "--site", SITE,
                              "--name", "ds", "--top-tags", "5")
        assert rc == 0, err
        outs.append(_h5(out))
    src = _rows(posts)
    questions = [r for r in src.values() if r["PostTypeId"] == "1"]
    with h5py.File(outs[0], "r") as a, h5py.File(outs[1], "r") as b:
        for key in ("tokens", "offsets", "labels", "meta/id", "classes"):
            assert np.array_equal(a[key][()], b[key][()]), key
        ids = a["meta/id"][()]
        classes = [c.decode() for c in a["classes"][()]]
        labels = a["labels"][()]
        tags = [t.decode() for t in a["meta/tags"][()]]
        urls = [u.decode() for u in a["meta/url"][()]]
        tok = from_prepared([v.decode() for v in a["vocab"][()]], a.attrs["tokenizer"])
        first = tok.decode(a["tokens"][a["offsets"][0]:a["offsets"][1]])
    # the rule: the first tag (in the post's order) among the 5 most frequent
    counts: dict[str, int] = {}
    for r in questions:
        for t in set(parse_tags(r["Tags"])):
            counts[t] = counts.get(t, 0) + 1
    top = sorted(counts, key=lambda t: -counts[t])[:5]
    assert len(classes) <= 5 and set(classes) <= set(top)
    for i, qid in enumerate(ids):
        row_tags = parse_tags(src[int(qid)]["Tags"])
        assert classes[labels[i]] == next(t for t in row_tags if t in top)
        assert tags[i] == " ".join(row_tags) and urls[i] == f"https://{SITE}/q/{qid}"
    expected = [int(r["Id"]) for r in questions if set(parse_tags(r["Tags"])) & set(top)]
    assert sorted(ids.tolist()) == sorted(expected) and len(ids) == len(set(ids))
    assert first.startswith(src[int(ids[0])]["Title"] + "\n\n")


def test_pairs_are_aligned_with_the_source_rows(realdata: Path, tmp_path: Path) -> None:
    """Every row: meta/answer_id is the question's AcceptedAnswerId in the source, and the
    decoded answer tokens are that answer's body as text (char tokens decode exactly)."""
    for name in (NEW, OLD):
        path = realdata / name
        rc, out, err = _fetch(tmp_path / "c", "--dump", str(path), "--pairs", "--tokenizer",
                              "char", "--top-tags", "0", "--name", Path(name).stem)
        assert rc == 0, err
        src = _rows(path)
        with_answer = [r for r in src.values() if r["PostTypeId"] == "1" and
                       int(r.get("AcceptedAnswerId", 0)) in src]
        with h5py.File(_h5(out), "r") as f:
            tok = from_prepared([v.decode() for v in f["vocab"][()]], f.attrs["tokenizer"])
            qo, ao = f["offsets"][()], f["answer_offsets"][()]
            n = len(qo) - 1
            assert len(ao) == n + 1 and ao[-1] == len(f["answer_tokens"])
            assert n == len(with_answer) == len(f["meta/answer_id"]) == len(f["labels"])
            for i in range(n):
                qid, aid = int(f["meta/id"][i]), int(f["meta/answer_id"][i])
                assert aid == int(src[qid]["AcceptedAnswerId"])
                assert int(f["meta/answer_score"][i]) == int(src[aid]["Score"])
                answer = tok.decode(f["answer_tokens"][ao[i]:ao[i + 1]])
                assert answer == html_to_text(src[aid]["Body"]).strip()
                question = tok.decode(f["tokens"][qo[i]:qo[i + 1]])
                assert question.startswith(src[qid]["Title"] + "\n\n")
            assert "answer_tokens" in f.attrs["pairs"]
        assert n == {NEW: 83, OLD: 10}[name]  # PROVENANCE.md's counts


def test_empty_site_and_bad_dumps_fail_cleanly(realdata: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    empty = tmp_path / "Posts.xml"
    empty.write_bytes(b'\xef\xbb\xbf<?xml version="1.0" encoding="utf-8"?>\r\n<posts>\r\n'
                      b'</posts>')
    rc, _, err = _fetch(cache, "--dump", str(empty))
    assert rc == 1 and err.count("\n") == 1 and "no question kept from Posts.xml (0 rows" in err
    empty.write_bytes(b"")
    rc, _, err = _fetch(cache, "--dump", str(empty))
    assert rc == 1 and err.count("\n") == 1 and "no <posts> element" in err
    data = (realdata / OLD).read_bytes()
    empty.write_bytes(data.replace(b"I'm hoping we can", b"I'm\x0bhoping we can"))
    rc, _, err = _fetch(cache, "--dump", str(empty))
    assert rc == 1 and err.count("\n") == 1
    assert err.startswith(f"error: {empty}: not well-formed XML at line 5, column ")
    good = _seven_zip(tmp_path / "site.7z", {"Posts.xml": data}).read_bytes()
    cut = tmp_path / "cut.7z"
    cut.write_bytes(good[:-40])
    rc, _, err = _fetch(cache, "--dump", str(cut))
    assert rc == 1 and err.count("\n") == 1 and "truncated or damaged download" in err
    users = _seven_zip(tmp_path / "users.7z", {"Users.xml": b"<users/>"})
    rc, _, err = _fetch(cache, "--dump", str(users))
    assert rc == 1 and "no Posts.xml in this archive" in err
    rc, _, err = _fetch(cache, "--dump", str(tmp_path / "missing.7z"))
    assert rc == 1 and "--dump: " in err and "does not exist" in err
    rc, _, err = _fetch(cache)
    assert rc == 1 and "choose a site with --site" in err
    rc, _, err = _fetch(cache, "--dump", str(realdata / OLD), "--pairs", "--chunk-chars", "100")
    assert rc == 1 and "--chunk-chars cannot be used with --pairs" in err
    _no_output(cache)
    assert cut.read_bytes() == good[:-40]  # the user's own file is left alone


# --- the Internet Archive item over loopback ----------------------------------------------

def _serve_item(loopback, realdata: Path, archive: bytes, *, md5: str | None = None,  # type: ignore[no-untyped-def]
                item: str = ITEM, sha1_only: str | None = None) -> None:
    """Replies shaped like the real ones (tests/data/realdata/api): an advancedsearch reply
    listing dump items, the item's metadata with md5/sha1/size strings, the archive."""
    search = json.loads((realdata / "api/advanced_search_response.json").read_text())
    docs = [{"identifier": i} for i in ("stackexchange_20250630", item, "stackexchange",
                                        "stackexchange_20240630_revised", "stackexchange_2024")]
    search["response"].update(docs=docs, numFound=len(docs))
    meta = json.loads((realdata / "api/nasa.json").read_text())
    template = dict(meta["files"][0])
    files = []
    for name, body in ((f"{SITE}.7z", archive), ("travel.stackexchange.com.7z", b"x"),
                       ("Sites.xml", b"<sites/>")):
        f = dict(template, name=name, size=str(len(body)), format="7z",
                 md5=hashlib.md5(body).hexdigest(), sha1=hashlib.sha1(body).hexdigest())
        files.append(f)
    if md5:
        files[0]["md5"] = md5
    if sha1_only:  # an item that lists only a sha1 for the archive
        del files[0]["md5"]
        files[0]["sha1"] = sha1_only
    meta.update(files=files, dir=f"/1/items/{item}")
    loopback.serve("/advancedsearch.php", json.dumps(search).encode(),
                   content_type="application/json")
    loopback.serve(f"/metadata/{item}", json.dumps(meta).encode(),
                   content_type="application/json")
    loopback.serve(f"/download/{item}/{SITE}.7z", archive)


def test_site_from_the_newest_item_over_loopback(loopback, realdata: Path,  # type: ignore[no-untyped-def]
                                                 tmp_path: Path) -> None:
    # a member that does not compress keeps the archive above the size worth resuming
    votes = np.random.default_rng(0).bytes(300_000)
    archive = _seven_zip(tmp_path / "a.7z", {"Posts.xml": (realdata / NEW).read_bytes(),
                                             "Votes.xml": votes}).read_bytes()
    _serve_item(loopback, realdata, archive)
    route = loopback.route(f"/download/{ITEM}/{SITE}.7z")
    route.fail_first, route.retry_after = 1, "0"  # one 503, then a cut connection: resumed
    route.cut_after = len(archive) // 2
    cache = tmp_path / "cache"
    args = ["--site", "datascience.meta", "--api-base", loopback.base_url, "--name", "dsm"]
    rc, out, err = _fetch(cache, *args)
    assert rc == 0, err
    path = _h5(out)
    with h5py.File(path, "r") as f:
        config = json.loads(f.attrs["config"])
        sources = json.loads(f.attrs["sources"])
        assert config["inputs"] == {"item": ITEM, "site": SITE}
        assert sources[0]["name"] == f"{ITEM}/{SITE}.7z"
        assert sources[0]["sha256"] == hashlib.sha256(archive).hexdigest()
        assert len(f["meta/id"]) > 200 and f["meta/url"][0].decode().startswith(
            f"https://{SITE}/q/")
    assert route.requests == 3 and loopback.log[-1].headers.get("Range") == \
        f"bytes={len(archive) // 2}-"
    assert (cache / "raw" / "stackexchange" / ITEM / f"{SITE}.7z").read_bytes() == archive
    # offline: the item choice, its metadata and the archive come from the cache
    before = loopback.requests()
    r = invoke_cli("--offline", "fetch", "stackexchange", *args, cache_dir=cache)
    assert r.returncode == 0, r.stderr
    assert _h5(r.stdout) == path and loopback.requests() == before
    # a named item, and a site the item does not have
    rc, _, err = _fetch(cache, "--site", "cooking", "--item", ITEM, "--api-base",
                        loopback.base_url)
    assert rc == 1 and err.count("\n") == 1
    assert f"item {ITEM} has no dump of cooking.stackexchange.com" in err


def test_checksum_mismatch_is_refused(loopback, realdata: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    archive = _seven_zip(tmp_path / "a.7z", {"Posts.xml": (realdata / OLD).read_bytes()})
    _serve_item(loopback, realdata, archive.read_bytes(), md5="0" * 32)
    cache = tmp_path / "cache"
    rc, _, err = _fetch(cache, "--site", SITE, "--item", ITEM, "--api-base", loopback.base_url)
    last = err.strip().splitlines()[-1]  # (the fetch layer warns once per source tried first)
    assert rc == 1 and last.startswith(f"error: could not fetch {SITE}.7z: ")
    assert f"md5 mismatch for {SITE}.7z: expected {'0' * 32}" in last
    assert not list(cache.glob(f"raw/**/{SITE}.7z"))
    _no_output(cache)
    _serve_item(loopback, realdata, archive.read_bytes(), sha1_only="1" * 40)
    rc, _, err = _fetch(cache, "--site", SITE, "--item", ITEM, "--api-base", loopback.base_url,
                        "--force")  # (the metadata reply is cached: --force asks again)
    assert rc == 1 and err.count("\n") == 1
    assert f"sha1 mismatch for {SITE}.7z: expected {'1' * 40}" in err
    assert not list(cache.glob(f"raw/**/{SITE}.7z"))
    _no_output(cache)
    loopback.serve(f"/metadata/{ITEM}", b"{}", content_type="application/json")
    rc, _, err = _fetch(cache, "--site", SITE, "--item", ITEM, "--api-base", loopback.base_url,
                        "--force")
    assert rc == 1 and f"no Internet Archive item '{ITEM}'" in err


def test_item_and_site_rules() -> None:
    assert newest_item(["stackexchange", "stackexchange_20240630",
                        "stackexchange_20240630_revised", "stackexchange_20231231"]) == \
        "stackexchange_20240630_revised"
    assert newest_item(["stackexchange", "nasa"]) is None
    assert check_site("travel") == "travel.stackexchange.com"
    assert check_site("stackoverflow") == "stackoverflow.com"
    assert check_site("Travel.StackExchange.com") == "travel.stackexchange.com"
    with pytest.raises(DlprepError, match="--site"):
        check_site("../etc")
    meta = {"files": [{"name": "stackoverflow.com-Posts.7z", "size": "10", "md5": "a" * 32},
                      {"name": "stackoverflow.com-Users.7z", "size": "5"}]}
    f = find_site_file(meta, item="stackexchange", site="stackoverflow.com",
                       api_base="https://archive.org", where="m")
    assert f.url == "https://archive.org/download/stackexchange/stackoverflow.com-Posts.7z"
    assert (f.size, f.md5, f.sha1) == (10, "a" * 32, None)
    with pytest.raises(DlprepError, match="close: .*stackoverflow.com-Posts.7z"):
        find_site_file(meta, item="stackexchange", site="stackoverflow.co",
                       api_base="https://archive.org", where="m")


# --- it trains --------------------------------------------------------------------------

def test_question_dataset_trains_rnn(realdata: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    cache = tmp_path / "cache"
    rc, out, err = _fetch(cache, "--dump", str(realdata / NEW), "--top-tags", "3", "--name",
                          "dsq", "--max-vocab", "2000", "--max-questions", "120")
    assert rc == 0, err
    run = tmp_path / "run"
    r = invoke_cli("train-baseline", "rnn", str(_h5(out)), "--epochs", "1", "--hidden", "16",
                   "--batch-size", "16", "--max-batches", "3", "--out", str(run),
                   cache_dir=cache)
    assert r.returncode == 0, r.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["metric"] == "accuracy" and 0.0 <= metrics["final"]["accuracy"] <= 1.0

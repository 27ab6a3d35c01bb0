"""Tokenizers: special tokens, non-ASCII round trips through vocab + config (as stored in the
HDF5 file), frequency/size limits, lowercase, and the stored-file round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dlprep.errors import DlprepError
from dlprep.text.tokenizers import (
    KINDS,
    SPECIALS,
    UNK,
    CharTokenizer,
    WordTokenizer,
    fit_tokenizer,
    from_prepared,
)

NON_ASCII = ("Ünïcödé naïve café — «quoted», 東京タワー, Ελληνικά, русский, emoji 🎉🐍, "
             "it’s l'été\tTab\nnew line  two spaces\n\nparagraph. ﬁ ligature, Å\n")


def _stored(tok) -> tuple[list[bytes], str]:  # type: ignore[no-untyped-def]
    """The vocab as h5py returns it (bytes) and the config as stored (JSON)."""
    return [v.encode("utf-8") for v in tok.vocab], json.dumps(tok.config, sort_keys=True)


@pytest.mark.parametrize("kind", KINDS)
def test_round_trip_non_ascii_through_stored_form(kind: str) -> None:
    if kind == "bpe":
        pytest.importorskip("tokenizers")
    tok = fit_tokenizer(kind, [NON_ASCII * 3], max_vocab=400 if kind == "bpe" else 0)
    assert tuple(tok.vocab[:4]) == SPECIALS == ("<pad>", "<unk>", "<bos>", "<eos>")
    ids = tok.encode(NON_ASCII)
    assert all(isinstance(i, int) for i in ids) and UNK not in ids
    rebuilt = from_prepared(*_stored(tok))
    assert rebuilt.encode(NON_ASCII) == ids
    assert rebuilt.decode(ids) == NON_ASCII
    assert rebuilt.decode(np.asarray(ids, np.int32)) == NON_ASCII
    # special ids other than <unk> decode to nothing
    assert rebuilt.decode([2, *ids, 3, 0, 0]) == NON_ASCII


def test_bpe_is_byte_level_unseen_text_still_round_trips() -> None:
    pytest.importorskip("tokenizers")
    tok = fit_tokenizer("bpe", ["hello world " * 50], max_vocab=300)
    unseen = "Zürich 北京 🙂 \x01"
    ids = tok.encode(unseen)
    assert UNK not in ids and from_prepared(*_stored(tok)).decode(ids) == unseen
    assert json.loads(_stored(tok)[1])["type"] == "bpe"


def test_char_tokenizer_vocab_and_unknown() -> None:
    tok = CharTokenizer.fit(["abca", "é"])
    assert tok.vocab == [*SPECIALS, "a", "b", "c", "é"]
    assert tok.encode("abcé") == [4, 5, 6, 7]
    assert tok.encode("z🎉") == [UNK, UNK]  # above and below the largest known code point
    assert tok.decode(tok.encode("az")) == "a\ufffd"
    assert tok.encode_array("").dtype == np.int32 and tok.encode("") == []


def test_char_min_freq_and_lowercase() -> None:
    tok = CharTokenizer.fit(["AAAb"], lowercase=True, min_freq=2)
    assert tok.vocab == [*SPECIALS, "a"]
    assert tok.encode("Ab") == [4, UNK]
    assert from_prepared(tok.vocab, tok.config).decode(tok.encode("AA")) == "aa"


def test_word_tokenizer_unicode_words_and_limits() -> None:
    text = "Der Bär aß Äpfel, der Bär schlief. it’s Öl"
    tok = WordTokenizer.fit([text], lowercase=True)
    words = [t for t in tok.tokens(text) if not t.isspace()]
    assert words == ["der", "bär", "aß", "äpfel", ",", "der", "bär", "schlief", ".", "it’s", "öl"]
    assert tok.decode(tok.encode(text)) == text.lower()
    capped = WordTokenizer.fit([text], lowercase=True, max_vocab=6)
    assert len(capped.vocab) == 6 and capped.vocab[4:] == [" ", "bär"]  # by frequency, then text
    frequent = WordTokenizer.fit([text], lowercase=True, min_freq=2)
    assert set(frequent.vocab[4:]) == {" ", "der", "bär"}
    assert frequent.decode(frequent.encode("der Hund")) == "der <unk>"


def test_word_tokenizer_without_whitespace_tokens() -> None:
    tok = WordTokenizer.fit(["a b, c"], keep_whitespace=False)
    assert tok.vocab[4:] == [",", "a", "b", "c"]
    rebuilt = from_prepared(tok.vocab, tok.config)
    assert rebuilt.decode(rebuilt.encode("a  b,\nc")) == "a b , c"


def test_from_prepared_rejects_bad_input() -> None:
    with pytest.raises(DlprepError, match="unknown tokenizer type"):
        from_prepared([*SPECIALS], {"type": "sentencepiece"})
    with pytest.raises(DlprepError, match="special tokens"):
        from_prepared(["a", "b"], {"type": "char"})
    with pytest.raises(DlprepError, match="--tokenizer"):
        fit_tokenizer("morse", ["x"])


def test_vectorised_word_ids_equal_the_regex_tokens(realdata) -> None:  # type: ignore[no-untyped-def]
    """word_spans must give exactly the tokens of the documented regex, on real and odd text."""
    from dlprep.text.clean import strip_gutenberg

    real = strip_gutenberg((realdata / "gutenberg/11-0.txt").read_text("utf-8")).body[:60000]
    rng = np.random.default_rng(0)
    alphabet = list("ab_ '\u2019\t\n\u00a0\u3000.,!é漢字😀\U00020000\u0301-9١")
    odd = "".join(rng.choice(alphabet, 5000)) + "'tis rock'n'roll dogs' a''b \u2019x\u2019 9'9"
    for keep in (True, False):
        for text in (real, odd, NON_ASCII, "", "'", "a"):
            tok = WordTokenizer.fit([text, "zzz"], keep_whitespace=keep, lowercase=True)
            expected = [tok.vocab.index(t) for t in tok.tokens(text)]
            assert tok.encode(text) == expected
            assert tok.decode(tok.encode(text)) == (text.lower() if keep else
                                                    " ".join(tok.tokens(text)))

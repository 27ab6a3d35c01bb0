"""Secrets never shown: URL userinfo and secret query parameters are masked."""

from dlprep.redact import redact_text, redact_url


def test_userinfo_and_secret_params_are_masked() -> None:
    out = redact_url("http://user:hunter22@host:8080/p/f.gz?api_key=K123&q=cats&Signature=S9")
    assert "hunter22" not in out and "K123" not in out and "S9" not in out
    assert out == "http://***@host:8080/p/f.gz?api_key=***&q=cats&Signature=***"


def test_plain_urls_and_paths_are_unchanged() -> None:
    for url in ("https://example.org/a?q=1", "file:///tmp/x", "/tmp/x", "not a url"):
        assert redact_url(url) == url


def test_text_with_urls_and_literal_secrets() -> None:
    text = "could not fetch http://u:pw9876@h/f: token abcd1234 rejected"
    out = redact_text(text, secrets=["abcd1234"])
    assert "pw9876" not in out and "abcd1234" not in out
    assert out.startswith("could not fetch http://***@h/f")

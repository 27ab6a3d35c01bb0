"""Text: cleaning (Gutenberg header/footer, NFC, control characters, dedupe) and tokenizers.

``dlprep.text.tokenizers.from_prepared(vocab, config)`` rebuilds the tokenizer of a prepared
sequence file so that ``decode(encode(text))`` round-trips (see docs/TEXT.md).
"""

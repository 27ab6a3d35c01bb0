"""Format parsers: read upstream bytes (never pickle) and raise
``FormatError(file, offset, what)``."""

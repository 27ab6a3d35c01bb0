"""Secrets out of everything dlprep shows or stores: URL userinfo and secret query parameters.

Every URL that reaches a log line, an error message, an HDF5 attribute, a cache key or a file
name goes through :func:`redact_url` (or :func:`redact_text` for free text that may hold URLs).
``http://user:pw@host/p?api_key=K&q=1`` becomes ``http://***@host/p?api_key=***&q=1``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"
# query parameter names whose values are secrets (compared case-insensitively, '-' == '_')
SECRET_PARAMS = frozenset({
    "key", "api_key", "apikey", "token", "access_token", "auth", "auth_token", "bearer",
    "signature", "sig", "secret", "client_secret", "password", "passwd", "pwd",
    "x-amz-signature", "x-amz-credential", "x-amz-security-token", "awsaccesskeyid",
    "oauth_token", "oauth_signature", "session", "sessionid", "access_key", "secret_key",
})
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
_REGISTERED: set[str] = set()  # users' secrets (API keys, tokens): masked in every redaction
_REGISTERED_LOCK = threading.Lock()


def register_secret(value: str) -> None:
    """Mask ``value`` (and its URL-quoted form) in everything ``redact_url``/``redact_text``
    return from now on, in this process. Values shorter than 4 characters are ignored."""
    from urllib.parse import quote, quote_plus

    if value and len(value) >= 4:
        with _REGISTERED_LOCK:
            _REGISTERED.update({value, quote(value, safe=""), quote_plus(value)})


def registered_secrets() -> frozenset[str]:
    """The secrets registered with :func:`register_secret` (never print them)."""
    with _REGISTERED_LOCK:
        return frozenset(_REGISTERED)


def mask_secrets(text: str) -> str:
    """``text`` with every registered secret replaced by ``***`` (nothing else changed)."""
    return _mask_registered(text)


def _mask_registered(text: str) -> str:
    for secret in sorted(registered_secrets(), key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def is_secret_param(name: str) -> bool:
    """True when a query parameter called ``name`` carries a secret."""
    return name.strip().lower().replace("-", "_") in {p.replace("-", "_") for p in SECRET_PARAMS}


def redact_url(url: str) -> str:
    """``url`` with userinfo replaced by ``***`` and secret query values masked.

    Anything that does not parse as a URL with a scheme and host comes back unchanged, except
    that registered secrets (:func:`register_secret`) are masked wherever they appear.
    """
    url = _mask_registered(url)
    try:
        parts = urlsplit(url)
    except ValueError:
        return _redact_loose(url)
    if not parts.scheme or not parts.netloc:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rpartition('@')[2]}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(is_secret_param(k) for k, _ in pairs):
            query = urlencode([(k, MASK if is_secret_param(k) else v) for k, v in pairs],
                              safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _redact_loose(text: str) -> str:
    text = re.sub(r"(://)[^/@\s]*@", rf"\1{MASK}@", text)
    return re.sub(r"([?&][^=&\s]+)=([^&\s]*)",
                  lambda m: f"{m.group(1)}={MASK}" if is_secret_param(m.group(1)[1:])
                  else m.group(0), text)


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """Free text with every URL in it redacted, and each literal in ``secrets`` (and each
    registered secret) masked."""
    out = _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), _mask_registered(text))
    for secret in secrets:
        if secret and len(secret) >= 4:
            out = out.replace(secret, MASK)
    return out

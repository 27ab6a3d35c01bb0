"""X (Twitter) API v2 recent search: ``GET {api_base}/tweets/search/recent``.

App-only auth (``Authorization: Bearer $X_BEARER_TOKEN``, read with
:func:`dlprep.secrets.require_secret` before any request; ``--offline`` replays the response
cache and needs no token). Pages of up to 100 posts are followed with ``next_token`` until
``max_posts``; the query is checked against the API's 512-character limit before anything is
sent. Politeness comes from the shared API core (:mod:`dlprep.fetch.api`): one request at a
time, 429 ``Retry-After`` and ``x-rate-limit-remaining: 0`` + ``x-rate-limit-reset`` waited
out, 5xx retried, 401/403 one line naming ``X_BEARER_TOKEN`` with no retries, every answer
cached by request (the token is never part of a key, a file or a message).

Recent search covers the last 7 days. X's terms restrict redistributing post content: share
post ids (``meta/id`` of the prepared set) so others can re-hydrate them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from ..errors import DlprepError
from ..fetch.options import FetchOptions
from ..formats.posts import Post, posts_from_response
from ..redact import redact_url

DEFAULT_API_BASE = "https://api.x.com/2"
SEARCH_PATH = "tweets/search/recent"
TOKEN_VAR = "X_BEARER_TOKEN"
#: query length limit of recent search (4,096 only for Enterprise accounts)
MAX_QUERY_CHARS = 512
#: the API's bounds for max_results of one page
PAGE_MIN, PAGE_MAX = 10, 100
DEFAULT_FIELDS = ("author_id", "created_at", "lang")
#: app-only recent search allows 450 requests per 15 minutes: one request every 2 s keeps
#: a long run under it; the rate-limit headers stop us before the window runs out anyway
MIN_INTERVAL = 2.0


def check_query(query: str | None) -> str:
    """``query`` stripped, or a ``DlprepError`` when it is empty or over 512 characters."""
    q = (query or "").strip()
    if not q:
        raise DlprepError("x: give --query QUERY (X search syntax, e.g. 'cats lang:en "
                          "-is:retweet'), or import a file with `dlprep import-posts`")
    if len(q) > MAX_QUERY_CHARS:
        raise DlprepError(f"x: --query is {len(q)} characters; recent search takes at most "
                          f"{MAX_QUERY_CHARS}")
    return q


def page_size(max_posts: int) -> int:
    """``max_results`` for every page: ``max_posts`` clamped to the API's 10..100."""
    return max(PAGE_MIN, min(PAGE_MAX, max_posts))


def search_recent(query: str, max_posts: int, *, cache_dir: Path, options: FetchOptions,
                  api_base: str = DEFAULT_API_BASE,
                  tweet_fields: Sequence[str] = DEFAULT_FIELDS) -> Iterator[Post]:
    """Posts matching ``query`` (newest first, as the API returns them), at most
    ``max_posts``, distinct ids. Responses are cached under ``cache_dir``."""
    from ..fetch.api import ApiClient, ApiError, HostPolicy
    from ..secrets import register, require_secret

    query = check_query(query)
    if max_posts < 1:
        raise DlprepError(f"x: --max-posts must be >= 1, got {max_posts}")
    headers: dict[str, str] = {}
    if not options.offline:  # a replay sends nothing: no token needed
        bearer = f"Bearer {require_secret(TOKEN_VAR, source='X')}"
        register(bearer, TOKEN_VAR)  # so that a 401 names the variable
        headers["Authorization"] = bearer
    client = ApiClient("X", api_base, cache_dir=cache_dir, options=options,
                       policy=HostPolicy(max_in_flight=1, min_interval=MIN_INTERVAL),
                       secret_headers=headers)
    params: dict[str, object] = {"query": query, "max_results": page_size(max_posts)}
    if tweet_fields:
        params["tweet.fields"] = ",".join(tweet_fields)
    seen: set[str] = set()
    tokens: set[str] = set()
    count = 0
    where = redact_url(f"{api_base.rstrip('/')}/{SEARCH_PATH}")
    pages: list[list[Post]] = []

    def check(doc: object) -> None:  # an error document is refused, and so never cached
        if not isinstance(doc, dict):
            raise ApiError(f"{where}: expected a JSON object, got {type(doc).__name__}")
        pages.append(posts_from_response(doc, where))

    while True:
        doc = client.get_json(SEARCH_PATH, params, check=check)
        for post in pages[-1]:
            if post.id in seen:
                continue
            if post.id:
                seen.add(post.id)
            yield post
            count += 1
            if count >= max_posts:
                return
        meta = doc.get("meta")
        token = meta.get("next_token") if isinstance(meta, dict) else None
        if not token or token in tokens:  # the last page (or a server repeating itself)
            return
        tokens.add(token)
        params["next_token"] = token

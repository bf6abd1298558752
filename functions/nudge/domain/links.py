"""Campaign parameters (UTM) on the links of an email, for attribution in the shop's analytics."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

_HREF = re.compile(r"""(\bhref\s*=\s*)(["'])(.*?)\2""", re.IGNORECASE | re.DOTALL)
_TEXT_URL = re.compile(r"""https?://[^\s<>"')\]]+""")


def with_params(url: str, params: Mapping[str, str]) -> str:
    """The URL with params added to its query; parameters it already has are kept as they are."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not params:
        return url
    query = parse_qsl(parts.query, keep_blank_values=True)
    present = {name for name, _ in query}
    query += [(name, value) for name, value in params.items() if name not in present]
    return urlunsplit(parts._replace(query=urlencode(query)))


def tag_html(markup: str, params: Mapping[str, str], *, keep: Callable[[str], bool]) -> str:
    """Add params to every http(s) href, except those `keep` says to leave alone (unsubscribe links)."""

    def rewrite(match: re.Match[str]) -> str:
        url = html.unescape(match.group(3))
        if keep(url):
            return match.group(0)
        return f"{match.group(1)}{match.group(2)}{html.escape(with_params(url, params))}{match.group(2)}"

    return _HREF.sub(rewrite, markup)


def tag_text(text: str, params: Mapping[str, str], *, keep: Callable[[str], bool]) -> str:
    """Add params to every http(s) URL in plain text, except those `keep` says to leave alone."""
    return _TEXT_URL.sub(lambda m: m.group(0) if keep(m.group(0)) else with_params(m.group(0), params), text)

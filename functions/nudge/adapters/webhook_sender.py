"""The WebhookSender port over urllib: one POST with a timeout, no redirects followed."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Mapping

from nudge.ports import PermanentSendError, TransientSendError


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # a redirect is answered as its own status; we never re-send a signed body elsewhere


class UrllibWebhooks:
    def __init__(self) -> None:
        self._opener = urllib.request.build_opener(_NoRedirect)

    def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout_seconds: float) -> int:
        if not url.startswith(("https://", "http://")):
            raise PermanentSendError(f"not an http(s) URL: {url}")
        request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
        try:
            with self._opener.open(request, timeout=timeout_seconds) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            raise TransientSendError(f"{url}: {exc}") from exc

"""The few HTML pages nudge serves to people (signup confirmation, email preferences), in the shop's name.

One look for all of them: the shop's name at the top (the display name of NUDGE_FROM_ADDRESS, else its
domain), a card, large buttons that work at phone widths. Every value is escaped here or by the caller;
pages are never cached and never framed (clickjacking), and they load nothing from elsewhere.
"""

from __future__ import annotations

import html
from email.utils import parseaddr

from nudge.handlers.rest import Response

_HTML = "text/html; charset=utf-8"
_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
_STYLE = """
body{margin:0;background:#f4f1ec;color:#222;font:16px/1.5 Helvetica,Arial,sans-serif}
header{background:#2f2a25;color:#fff;padding:14px 20px;font-weight:bold;letter-spacing:.02em}
main{max-width:480px;margin:32px auto;padding:0 16px}
.card{background:#fff;border-radius:10px;padding:24px;box-shadow:0 1px 3px rgba(0,0,0,.08)}
h1{font-size:22px;margin:0 0 12px}
.notice{background:#eef6ee;border-left:4px solid #3c8d40;padding:8px 12px}
button{display:block;width:100%;margin:12px 0 0;padding:12px;font-size:16px;border-radius:6px;
border:1px solid #2f2a25;background:#2f2a25;color:#fff;cursor:pointer}
button.secondary{background:#fff;color:#2f2a25}
fieldset{border:1px solid #ddd;border-radius:6px;margin:12px 0}
label{display:block;padding:4px 0}
small{color:#666}
"""


def shop_name(from_address: str) -> str:
    """The shop as people know it: "Linen & Clay <hello@…>" → Linen & Clay; else the sender's domain."""
    name, address = parseaddr(from_address)
    return name or address.rpartition("@")[2] or "Our shop"


def page(shop: str, title: str, body: str, *, status: int = 200) -> Response:
    """A page in the shop's name; `body` is HTML the caller has escaped."""
    markup = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{html.escape(title)}</title>
<style>{_STYLE}</style></head><body><header>{html.escape(shop)}</header>
<main><div class="card"><h1>{html.escape(title)}</h1>
{body}
</div></main></body></html>"""
    return Response(status_code=status, content_type=_HTML, body=markup, headers=dict(_HEADERS))

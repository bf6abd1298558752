"""SMS rules: E.164 numbers, segment counting (GSM-7 or UCS-2) and the inbound keywords carriers mandate."""

from __future__ import annotations

import math
import re
from enum import StrEnum

from nudge.domain.frozen import dataclass

_GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")  # each costs two septets (escape + char)

OPT_OUT_NOTICE = "Reply STOP to opt out"


class Keyword(StrEnum):
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
    HELP = "help"


# The union of the FCC's 2025 TCPA revocation words (STOP, QUIT, END, REVOKE, OPT OUT, CANCEL, UNSUBSCRIBE)
# and AWS End User Messaging's opt-out keywords (ARRET, CANCEL, END, OPT-OUT, OPTOUT, QUIT, REMOVE, STOP, TD,
# UNSUBSCRIBE), plus the carriers' STOPALL. "OPT OUT" is two words: keyword_of joins the first two.
OPT_OUT_KEYWORDS = frozenset(
    {"STOP", "STOPALL", "QUIT", "END", "REVOKE", "OPT OUT", "OPTOUT", "OPT-OUT", "CANCEL", "UNSUBSCRIBE", "REMOVE"}
    | {"ARRET", "TD"}
)
OPT_IN_KEYWORDS = frozenset({"START", "UNSTOP", "OPT IN", "OPTIN", "OPT-IN"})
HELP_KEYWORDS = frozenset({"HELP", "INFO"})
_KEYWORDS = {
    **dict.fromkeys(OPT_OUT_KEYWORDS, Keyword.OPT_OUT),
    **dict.fromkeys(OPT_IN_KEYWORDS, Keyword.OPT_IN),
    **dict.fromkeys(HELP_KEYWORDS, Keyword.HELP),
}
# A notice is "reply/text/send STOP" or "STOP to opt out/unsubscribe/end/cancel/quit": words, not a substring,
# so "Nonstop travel mug" or "don't stop now" does not pass for one.
_NOTICE = re.compile(
    r"\b(?:reply|text|send)\s+[\"'“]?stop\b|\bstop[\"'”]?\s+to\s+(?:opt[\s-]?out|unsubscribe|end|cancel|quit)\b",
    re.IGNORECASE,
)


def to_e164(raw: str, default_region: str | None = None) -> str:
    """Normalize a phone number to E.164 (+14155550123); ValueError if it is not a valid number (domain.phones)."""
    from nudge.domain import phones  # here: phonenumbers (~14 ms) only where a number is read (ADR 0020)

    return phones.normalize_phone(raw, default_region)


@dataclass(frozen=True, slots=True)
class Segments:
    encoding: str  # "gsm7" or "ucs2"
    count: int


# Past this many segments an SMS is not sent (ADR 0015): SNS lets ~10 through (1,600 bytes), each billed as
# one message, and the text is partly input-controlled (a storefront's recovery URL, a name).
MAX_SEGMENTS = 4


def segments(text: str) -> Segments:
    """How many parts the text is billed as: 160/153 septets in GSM-7, else 70/67 UTF-16 units in UCS-2."""
    if all(ch in _GSM7_BASIC or ch in _GSM7_EXTENSION for ch in text):
        septets = sum(2 if ch in _GSM7_EXTENSION else 1 for ch in text)
        return Segments("gsm7", 1 if septets <= 160 else math.ceil(septets / 153))
    units = len(text.encode("utf-16-le")) // 2
    return Segments("ucs2", 1 if units <= 70 else math.ceil(units / 67))


def keyword_of(body: str) -> tuple[Keyword, str] | None:
    """The keyword an inbound SMS carries (its first word, or first two as in "OPT OUT"; any case), with the
    keyword as listed; None if none."""
    words = [word.strip(".!,;:\"'").upper() for word in body.strip().split()]
    words = [word for word in words if word]
    for candidate in (" ".join(words[:2]), words[0] if words else ""):
        if (keyword := _KEYWORDS.get(candidate)) is not None:
            return keyword, candidate
    return None


def has_opt_out_notice(text: str) -> bool:
    """True when the text tells the reader how to opt out ("Reply STOP...", "Text STOP to end")."""
    return _NOTICE.search(text) is not None


def with_opt_out_notice(text: str) -> str:
    """Marketing SMS must say how to opt out; add the notice unless the template already does."""
    return text if has_opt_out_notice(text) else f"{text} {OPT_OUT_NOTICE}"


def names_sender(text: str, shop_name: str) -> bool:
    """True when the text names the shop as a word (any case), so the reader knows who is writing."""
    name = shop_name.strip()
    return not name or re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text, re.IGNORECASE) is not None


def with_sender_name(text: str, shop_name: str) -> str:
    """A marketing SMS starts with "<Shop>: " unless it already names the shop (CTIA: identify the sender)."""
    return text if names_sender(text, shop_name) else f"{shop_name.strip()}: {text}"


def help_reply(shop_name: str, support: str | None, custom: str | None = None) -> str:
    """The answer to HELP: names the shop, says how to stop and get help (CTIA's HELP requirements)."""
    text = custom or "Reply STOP to opt out, START to opt back in. Msg&data rates may apply."
    if support and support not in text:
        text = f"{text} Help: {support}"
    return with_sender_name(text, shop_name)

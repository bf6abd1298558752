"""SMS rules: E.164 numbers, segment counting (GSM-7 or UCS-2) and the inbound keywords carriers mandate."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import phonenumbers

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


_KEYWORDS = {
    **dict.fromkeys(("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"), Keyword.OPT_OUT),
    **dict.fromkeys(("START", "UNSTOP"), Keyword.OPT_IN),
    "HELP": Keyword.HELP,
}


def to_e164(raw: str, default_region: str | None = None) -> str:
    """Normalize a phone number to E.164 (+14155550123); ValueError if it is not a valid number."""
    try:
        number = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException:
        raise ValueError("not a phone number; use international format, e.g. +14155550123") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError("not a valid phone number for its country")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@dataclass(frozen=True, slots=True)
class Segments:
    encoding: str  # "gsm7" or "ucs2"
    count: int


def segments(text: str) -> Segments:
    """How many parts the text is billed as: 160/153 septets in GSM-7, else 70/67 UTF-16 units in UCS-2."""
    if all(ch in _GSM7_BASIC or ch in _GSM7_EXTENSION for ch in text):
        septets = sum(2 if ch in _GSM7_EXTENSION else 1 for ch in text)
        return Segments("gsm7", 1 if septets <= 160 else math.ceil(septets / 153))
    units = len(text.encode("utf-16-le")) // 2
    return Segments("ucs2", 1 if units <= 70 else math.ceil(units / 67))


def keyword_of(body: str) -> tuple[Keyword, str] | None:
    """The keyword an inbound SMS carries (its first word, any case), with that word; None if none."""
    words = body.strip().split()
    if not words:
        return None
    word = words[0].strip(".!,;:").upper()
    keyword = _KEYWORDS.get(word)
    return (keyword, word) if keyword else None


def with_opt_out_notice(text: str) -> str:
    """Marketing SMS must say how to opt out; add the notice unless the template already does."""
    if "STOP" in text.upper():
        return text
    return f"{text} {OPT_OUT_NOTICE}"

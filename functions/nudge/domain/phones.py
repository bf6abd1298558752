"""One normalization of phone numbers, for every way in: API bodies, forms, webhooks, imports, inbound SMS.

A number is parsed by libphonenumber and kept only if it is a valid number for its country, in E.164
(`+442079460958`). Spaces, dashes, dots, brackets and a national trunk prefix written in brackets
(`+44 (0)20 7946 0958`) are understood the same everywhere, so a STOP from a number always meets the
suppression of the number a webhook or the API stored. A number without `+` needs the country it was
typed in (`default_region`, e.g. a Shopify address's `country_code`); without one it is refused, never
guessed at.
"""

from __future__ import annotations

import phonenumbers


class InvalidPhone(ValueError):
    """Not a valid phone number; the message says why (never echoing the input)."""


def normalize_phone(value: str, default_region: str | None = None) -> str:
    """The number in E.164; InvalidPhone unless it is a valid number (in `default_region` if not international)."""
    region = default_region.upper() if isinstance(default_region, str) and len(default_region) == 2 else None
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        raise InvalidPhone("not a phone number; use international format, e.g. +14155550123") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone("not a valid phone number for its country")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def phone_or_none(value: object, default_region: object = None) -> str | None:
    """The normalized number, or None when `value` is not one (storefront payloads carry free text)."""
    if not isinstance(value, str) or not value.strip() or len(value) > 64:
        return None
    try:
        return normalize_phone(value, default_region if isinstance(default_region, str) else None)
    except InvalidPhone:
        return None

"""One normalization of email addresses, for every way in: API bodies, forms, webhooks, imports, suppressions.

An address is reduced to its addr-spec and refused unless it is a plain `local@domain` (RFC 5321 dot-atom):

- surrounding whitespace is stripped; anything else that is not the addr-spec is refused: display names
  (`"x" <a@b.example>`, `X <a@b.example>`), comments (`a(c)@b.example`), quoted local parts, IP literals,
  whitespace and control characters inside;
- the local part is ASCII (no SMTPUTF8), 1-64 characters of the dot-atom set, no leading, trailing or
  doubled dot;
- the domain is IDNA-encoded (IDNA 2003, Python's own codec: `bücher.example` → `xn--bcher-kva.example`),
  at least two labels of 1-63 letters, digits or hyphens (no hyphen at either end), a top-level label
  that is not all digits, 253 characters at most;
- the whole address is lower-cased, local part included: every mailbox provider nudge's users send to
  treats it case-insensitively, and a suppression must hold whatever case a later form uses;
- 254 characters at most (RFC 5321's path limit less the angle brackets).

The result is what contact ids, suppression keys and consent records are hashed from, so one spelling
of an address can never slip past the suppression of another.
"""

from __future__ import annotations

import functools
import re

MAX_EMAIL_LENGTH = 254
_LOCAL = re.compile(r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# What a bare address never holds: a display name's or comment's brackets and quotes, separators, white space
# (`\s` is str.isspace's set) and control characters. One search, not a loop over the characters.
_NOT_BARE = re.compile(r'[<>()",;\[\]\\\s\x00-\x1f]')


class InvalidEmail(ValueError):
    """Not a plain addr-spec; the message says why (never echoing the input)."""


@functools.lru_cache(maxsize=1 << 16)  # pure; an import normalises each customer's address once per order
def normalize_email(value: str) -> str:
    """The address as nudge stores and hashes it; InvalidEmail unless `value` is a plain addr-spec.

    Cached (a pure function of the text; a refusal is not cached): one event asks for its contact's id,
    and so the address's normal form, several times, and a backtest replays tens of thousands of them.
    """
    text = value.strip()
    if not text or len(text) > 4 * MAX_EMAIL_LENGTH:
        raise InvalidEmail("not an email address")
    if _NOT_BARE.search(text):
        raise InvalidEmail("send the bare address (name@example.com): no display name, comment or quotes")
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain:
        raise InvalidEmail("not an email address")
    local = local.lower()
    if not local.isascii() or len(local) > 64 or not _LOCAL.fullmatch(local):
        raise InvalidEmail("the part before @ must be 1-64 ASCII letters, digits, dots or !#$%&'*+/=?^_`{|}~-")
    ascii_domain = _ascii_domain(domain.rstrip("."))
    address = f"{local}@{ascii_domain}"
    if len(address) > MAX_EMAIL_LENGTH:
        raise InvalidEmail(f"an email address has at most {MAX_EMAIL_LENGTH} characters")
    return address


def email_or_none(value: object) -> str | None:
    """The normalized address, or None when `value` is not one (storefront payloads carry free text)."""
    if not isinstance(value, str):
        return None
    try:
        return normalize_email(value)
    except InvalidEmail:
        return None


@functools.lru_cache(maxsize=1 << 12)  # pure; most addresses share a few domains (a refusal is not cached)
def _ascii_domain(domain: str) -> str:
    try:
        encoded = domain.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise InvalidEmail("the domain is not a valid host name") from None
    labels = encoded.split(".")
    if len(encoded) > 253 or len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels):
        raise InvalidEmail("the domain is not a valid host name (e.g. example.com)")
    if labels[-1].isdigit() or len(labels[-1]) < 2:
        raise InvalidEmail("the domain is not a valid host name (e.g. example.com)")
    return encoded

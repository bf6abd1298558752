"""The brand kit: everything shop-specific a message shows, in one file (templates/brand.yaml).

Every template reads it as `brand`; nothing shop-specific is written into a shipped template.
"""

from __future__ import annotations

import re
from dataclasses import field
from typing import TYPE_CHECKING, Annotated

from nudge.domain.records import Check, items, record

if TYPE_CHECKING:
    from pydantic import Field

_COLOUR = r"^#(?:[0-9a-fA-F]{3}){1,2}$"
_URL = r"^https://\S+$"


@record
class BrandColours:
    """Hex colours; defaults are neutral and pass WCAG AA for text on their backgrounds."""

    primary: Annotated[str, Field(pattern=_COLOUR)] = "#1f2937"  # buttons, links
    on_primary: Annotated[str, Field(pattern=_COLOUR)] = "#ffffff"  # text on a button
    text: Annotated[str, Field(pattern=_COLOUR)] = "#1f2937"
    muted: Annotated[str, Field(pattern=_COLOUR)] = "#6b7280"  # footer, captions
    background: Annotated[str, Field(pattern=_COLOUR)] = "#f3f4f6"  # around the card
    card: Annotated[str, Field(pattern=_COLOUR)] = "#ffffff"


@record
class BrandUrls:
    """The shop's pages that messages link to. Only `home` is required; the others fall back to it."""

    home: Annotated[str, Field(pattern=_URL)]
    shop: Annotated[str | None, Field(pattern=_URL)] = None  # all products / best sellers
    new_arrivals: Annotated[str | None, Field(pattern=_URL)] = None
    account: Annotated[str | None, Field(pattern=_URL)] = None  # order history, reorder
    reviews: Annotated[str | None, Field(pattern=_URL)] = None
    referral: Annotated[str | None, Field(pattern=_URL)] = None  # the contact id is appended: <referral>/<id>
    search: Annotated[str | None, Field(pattern=_URL)] = None  # ?q=<title> is appended (recommendations)
    help: Annotated[str | None, Field(pattern=_URL)] = None

    def __post_init__(self) -> None:
        # Every page falls back to home, so a template may use any of them without a guard.
        for name, value in items(self):
            if value is None:
                object.__setattr__(self, name, self.home)


@record
class SocialLink:
    name: Annotated[str, Field(min_length=1, max_length=40)]
    url: Annotated[str, Field(pattern=_URL)]


def _css_safe(value: str) -> str:
    # It lands in style attributes: letters, spaces, commas, quotes and hyphens only.
    if not re.fullmatch(r"[A-Za-z0-9 ,'\"-]+", value):
        raise ValueError("a CSS font-family list: letters, digits, spaces, commas, quotes, hyphens")
    return value


@record
class Brand:
    """The brand kit. `postal_address` may be left empty here and given at deploy time instead."""

    name: Annotated[str, Field(min_length=1, max_length=60)]
    # The From display name ("Example Shop <hello@…>"); the shop's name when not given.
    from_name: Annotated[str | None, Field(max_length=60)] = None
    logo_url: Annotated[str | None, Field(pattern=_URL)] = None
    logo_width: Annotated[int, Field(ge=40, le=300)] = 140  # px, at 600 px wide
    tagline: Annotated[str | None, Field(max_length=120)] = None
    colours: BrandColours = field(default_factory=BrandColours)
    font_family: Annotated[str, Check(_css_safe)] = "Helvetica, Arial, sans-serif"
    urls: BrandUrls
    support_email: Annotated[str | None, Field(pattern=r"^[^@\s]+@[^@\s]+$")] = None
    support_phone: str | None = None
    postal_address: str = ""
    social: tuple[SocialLink, ...] = ()
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "USD"

    @property
    def sender_name(self) -> str:
        return self.from_name or self.name

    @property
    def support(self) -> str | None:
        """How a reader reaches a person: the support address, else the phone number."""
        return self.support_email or self.support_phone

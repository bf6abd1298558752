"""The brand kit: everything shop-specific a message shows, in one file (templates/brand.yaml).

Every template reads it as `brand`; nothing shop-specific is written into a shipped template.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

_COLOUR = r"^#(?:[0-9a-fA-F]{3}){1,2}$"
_URL = r"^https://\S+$"


class BrandColours(BaseModel):
    """Hex colours; defaults are neutral and pass WCAG AA for text on their backgrounds."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    primary: str = Field(default="#1f2937", pattern=_COLOUR)  # buttons, links
    on_primary: str = Field(default="#ffffff", pattern=_COLOUR)  # text on a button
    text: str = Field(default="#1f2937", pattern=_COLOUR)
    muted: str = Field(default="#6b7280", pattern=_COLOUR)  # footer, captions
    background: str = Field(default="#f3f4f6", pattern=_COLOUR)  # around the card
    card: str = Field(default="#ffffff", pattern=_COLOUR)


class BrandUrls(BaseModel):
    """The shop's pages that messages link to. Only `home` is required; the others fall back to it."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    home: str = Field(pattern=_URL)
    shop: str | None = Field(default=None, pattern=_URL)  # all products / best sellers
    new_arrivals: str | None = Field(default=None, pattern=_URL)
    account: str | None = Field(default=None, pattern=_URL)  # order history, reorder
    reviews: str | None = Field(default=None, pattern=_URL)
    referral: str | None = Field(default=None, pattern=_URL)  # the contact id is appended: <referral>/<id>
    search: str | None = Field(default=None, pattern=_URL)  # ?q=<title> is appended (recommendations)
    help: str | None = Field(default=None, pattern=_URL)

    def model_post_init(self, __context: object) -> None:
        # Every page falls back to home, so a template may use any of them without a guard.
        for name in type(self).model_fields:
            if getattr(self, name) is None:
                object.__setattr__(self, name, self.home)


class SocialLink(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    name: str = Field(min_length=1, max_length=40)
    url: str = Field(pattern=_URL)


class Brand(BaseModel):
    """The brand kit. `postal_address` may be left empty here and given at deploy time instead."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    name: str = Field(min_length=1, max_length=60)
    # The From display name ("Example Shop <hello@…>"); the shop's name when not given.
    from_name: str | None = Field(default=None, max_length=60)
    logo_url: str | None = Field(default=None, pattern=_URL)
    logo_width: int = Field(default=140, ge=40, le=300)  # px, at 600 px wide
    tagline: str | None = Field(default=None, max_length=120)
    colours: BrandColours = Field(default_factory=BrandColours)
    font_family: str = "Helvetica, Arial, sans-serif"
    urls: BrandUrls
    support_email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+$")
    support_phone: str | None = None
    postal_address: str = ""
    social: tuple[SocialLink, ...] = ()
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")

    @field_validator("font_family")
    @classmethod
    def _css_safe(cls, value: str) -> str:
        # It lands in style attributes: letters, spaces, commas, quotes and hyphens only.
        if not re.fullmatch(r"[A-Za-z0-9 ,'\"-]+", value):
            raise ValueError("a CSS font-family list: letters, digits, spaces, commas, quotes, hyphens")
        return value

    @property
    def sender_name(self) -> str:
        return self.from_name or self.name

    @property
    def support(self) -> str | None:
        """How a reader reaches a person: the support address, else the phone number."""
        return self.support_email or self.support_phone

"""Ad audiences as data (audiences/*.yaml) and the identifiers nudge hands to ad platforms.

An audience is one list on one platform (a Meta custom audience, a Google Ads Customer Match user list, a
TikTok custom audience), filled either by flows (`audience` steps add and remove people) or kept equal to
a segment or lifecycle stage. Identifiers leave nudge only normalized and SHA-256 hashed, as each platform
documents (docs/audiences.md, ADR 0024), and only for contacts whose consent covers advertising.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import field
from typing import TYPE_CHECKING, Annotated, Literal, TypeVar

from nudge.domain.frozen import dataclass
from nudge.domain.model import Contact
from nudge.domain.records import Checked, by_type, record

if TYPE_CHECKING:
    from pydantic import Field

Platform = Literal["meta", "google", "tiktok"]
PLATFORMS: tuple[Platform, ...] = ("meta", "google", "tiktok")

# The most identifiers (rows) one request may carry, per each platform's documentation (docs/audiences.md):
# Meta's /{audience}/users takes 10,000 rows a request; Google's AddOfflineUserDataJobOperations up to
# 100,000 user identifiers a request; TikTok's segment mapping is batched at 1,000 rows a request (the
# batch size TikTok-certified connectors use; the exact ceiling is not in the sources we could read).
BATCH_LIMITS: dict[str, int] = {"meta": 10_000, "google": 100_000, "tiktok": 1_000}

# Why a contact is not added to an audience (recorded on the audience step's message, like a message skip).
NO_ADS_CONSENT = "no_ads_consent"
NO_IDENTIFIER = "no_email_or_phone"

_ID = r"^[a-z][a-z0-9_]{0,39}$"


@record
class FlowsSource:
    """Membership managed by flows: their `audience` steps add and remove people."""

    type: Literal["flows"] = "flows"


@record
class SegmentSource:
    """Membership kept equal to a segment or lifecycle stage (`nudge audiences sync`)."""

    type: Literal["segment"] = "segment"
    segment: Annotated[str, Field(pattern=_ID, description="A segment id from segments/, or a lifecycle stage.")]


Source = FlowsSource | SegmentSource
SOURCES = by_type(Source)


@record
class Audience(Checked):
    """One list on one ad platform, and where its members come from."""

    id: Annotated[str, Field(pattern=_ID, description="nudge's name for it: flows' audience steps name it.")]
    name: Annotated[str, Field(min_length=1)]
    platform: Platform
    audience_id: Annotated[
        str,
        Field(
            min_length=1,
            max_length=200,
            description="The platform's id: Meta's custom audience id, Google's user list id, TikTok's audience id.",
        ),
    ]
    account_id: Annotated[
        str | None,
        Field(description="Google: the Ads customer id (digits); TikTok: the advertiser id. Not used for Meta."),
    ] = None
    source: Annotated[Source, SOURCES] = field(default_factory=FlowsSource)

    def _check(self) -> None:
        if not re.fullmatch(r"\d{1,30}", self.audience_id):
            raise ValueError(f"audience_id is the {self.platform} audience's numeric id, e.g. '23851234567890123'")
        if self.platform == "meta" and self.account_id is not None:
            raise ValueError("a Meta audience needs no account_id: the custom audience id names it")
        if self.platform != "meta" and not (self.account_id and re.fullmatch(r"\d{1,30}", self.account_id)):
            who = "Google Ads customer id (digits, no dashes)" if self.platform == "google" else "TikTok advertiser id"
            raise ValueError(f"a {self.platform} audience needs account_id: the {who}")

    @property
    def segment(self) -> str | None:
        return self.source.segment if isinstance(self.source, SegmentSource) else None


class AudienceCatalog:
    """The audiences of audiences/, by id."""

    def __init__(self, audiences: Iterable[Audience] = ()) -> None:
        self._audiences: dict[str, Audience] = {}
        for audience in audiences:
            if audience.id in self._audiences:
                raise ValueError(f"two audiences share the id {audience.id!r}")
            self._audiences[audience.id] = audience

    def __iter__(self) -> Iterator[Audience]:
        return iter(self._audiences.values())

    def __len__(self) -> int:
        return len(self._audiences)

    def get(self, audience_id: str) -> Audience | None:
        return self._audiences.get(audience_id)

    def ids(self) -> set[str]:
        return set(self._audiences)


# Identifiers ------------------------------------------------------------------------------------------


def normalize_email(email: str) -> str:
    """Every platform: leading and trailing whitespace removed, lower case."""
    return email.strip().lower()


def normalize_phone(phone: str) -> str | None:
    """E.164 (`+` and up to 15 digits, country code first), or None if the number cannot be one."""
    digits = re.sub(r"[\s().\-]", "", phone.strip())
    if not re.fullmatch(r"\+[1-9]\d{6,14}", digits):
        return None
    return digits


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Identifiers:
    """A contact's hashed identifiers as one platform wants them (lower-case hex SHA-256)."""

    email: str | None = None
    phone: str | None = None

    def __bool__(self) -> bool:
        return self.email is not None or self.phone is not None


def identifiers_for(platform: str, email: str | None, phone: str | None) -> Identifiers:
    """Normalized and hashed as the platform documents it.

    Email: trimmed and lower-cased on all three. Phone: E.164; Meta wants the digits only (country code
    included, no `+`), Google and TikTok the E.164 string with its `+` (docs/audiences.md).
    """
    hashed_email = sha256(normalize_email(email)) if email and "@" in email else None
    e164 = normalize_phone(phone) if phone else None
    hashed_phone = None
    if e164 is not None:
        hashed_phone = sha256(e164.lstrip("+") if platform == "meta" else e164)
    return Identifiers(email=hashed_email, phone=hashed_phone)


def ad_consent_problem(contact: Contact | None) -> str | None:
    """Why this contact may not be uploaded to an ad audience, or None: consent must cover advertising."""
    if contact is None or contact.ads_marketing is not True:
        return NO_ADS_CONSENT
    if not contact.email and not contact.phone:
        return NO_IDENTIFIER
    return None


T = TypeVar("T")


def batches(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]

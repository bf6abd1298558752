"""`nudge bench --audiences N`: a segment of N members synced to Meta, Google Ads and TikTok (ADR 0024).

The real adapters against the local fakes of the three APIs (nudge.local.ad_fakes), which check every
request's shape and batch size: the requests each platform needed, the time taken, and a second sync of
the same segment (it must send nothing), then one after a few members left and a few withdrew consent.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace

from nudge.adapters.ad_audiences import platforms
from nudge.adapters.memory import MemoryAudienceLedger, MemoryQueue
from nudge.clocks import VirtualClock
from nudge.domain.audiences import Audience, AudienceCatalog
from nudge.domain.frozen import dataclass
from nudge.domain.model import Contact
from nudge.domain.validation import validate
from nudge.local.ad_fakes import CREDENTIALS, FakeAdPlatforms
from nudge.local.bench import START
from nudge.services.audiences import AudienceService

SEGMENT_AUDIENCES = AudienceCatalog(
    [
        validate(
            Audience,
            {
                "id": "vip_meta",
                "name": "VIP",
                "platform": "meta",
                "audience_id": "23851234567890123",
                "source": {"type": "segment", "segment": "vip"},
            },
        ),
        validate(
            Audience,
            {
                "id": "vip_google",
                "name": "VIP",
                "platform": "google",
                "audience_id": "7001",
                "account_id": "1234567890",
                "source": {"type": "segment", "segment": "vip"},
            },
        ),
        validate(
            Audience,
            {
                "id": "vip_tiktok",
                "name": "VIP",
                "platform": "tiktok",
                "audience_id": "6990001",
                "account_id": "7000000001",
                "source": {"type": "segment", "segment": "vip"},
            },
        ),
    ]
)


@dataclass(frozen=True)
class SyncFigures:
    audience: str
    added: int
    removed: int
    requests: int
    seconds: float


def members(count: int) -> list[Contact]:
    return [
        Contact(
            f"v{i:07d}",
            email=f"vip{i}@example.com",
            phone=f"+1415{i:07d}",
            ads_marketing=True,
            segments=("vip",),
        )
        for i in range(count)
    ]


def sync_rounds(count: int) -> tuple[FakeAdPlatforms, list[list[SyncFigures]]]:
    """Three syncs of every audience: the first, the same segment again, then after 1% left and 0.5% withdrew."""
    clock = VirtualClock(START)
    fake = FakeAdPlatforms()
    service = AudienceService(
        ledger=MemoryAudienceLedger(),
        platform=platforms(lambda name: CREDENTIALS[name], fake),
        audiences=SEGMENT_AUDIENCES,
        queue=MemoryQueue(clock),
        clock=clock,
    )
    segment = members(count)
    changed = [
        replace(c, segments=()) if i % 100 == 0 else replace(c, ads_marketing=False) if i % 200 == 1 else c
        for i, c in enumerate(segment)
    ]
    rounds = []
    for contacts in (segment, segment, changed):
        figures = []
        for audience in SEGMENT_AUDIENCES:
            began = time.perf_counter()
            outcome = service.sync_segment(audience.id, contacts)
            if outcome.error:
                raise RuntimeError(f"{audience.id}: {outcome.error}")
            figures.append(
                SyncFigures(audience.id, outcome.added, outcome.removed, outcome.requests, time.perf_counter() - began)
            )
        rounds.append(figures)
    if fake.violations:
        raise RuntimeError(f"requests the fake APIs refused: {fake.violations[:3]}")
    return fake, rounds


def audience_sync(count: int) -> Iterator[str]:
    fake, rounds = sync_rounds(count)
    titles = ("first sync", "same segment again", "1% left, 0.5% withdrew consent")
    for title, figures in zip(titles, rounds, strict=True):
        yield f"{title}:"
        for f in figures:
            yield (f"  {f.audience:<11} +{f.added:>7,} -{f.removed:>5,}  {f.requests:>4} requests  {f.seconds:6.2f} s")
    largest = {platform: max(rows) for platform, rows in fake.rows.items()}
    yield f"largest request (rows, Google: identifiers): {largest}"

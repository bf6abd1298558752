"""`nudge campaign send FILE --local`: a campaign on moto through the real handlers, on a virtual clock.

Sample contacts in several time zones arrive through the signed API; the campaign is created with a signed
POST /v1/campaigns; the pump drains the jobs queue through the sweep function (the audience pieces, a
minute apart, as SQS delays them) and the work queue through the worker, firing Scheduler's schedules for
sends due later (a local time in each zone). What comes back is read from moto's SES and SNS records.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import field
from datetime import UTC, datetime, timedelta
from typing import Any

from nudge.clocks import VirtualClock
from nudge.domain.campaigns import Campaign
from nudge.domain.frozen import dataclass
from nudge.domain.validation import dump
from nudge.local.moto_stack import start_moto_stack

START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
ZONES = ("America/Los_Angeles", "America/New_York", "Europe/London", "Europe/Paris", "Asia/Tokyo", "Australia/Sydney")


@dataclass
class CampaignPlay:
    created: dict[str, Any]
    status: dict[str, Any]
    sends: list[tuple[datetime, str, str]] = field(default_factory=list)  # (virtual time, to, subject)
    messages: dict[str, int] = field(default_factory=dict)  # status -> count
    requests: dict[str, int] = field(default_factory=dict)  # "service Operation" -> count
    recipients: int = 0

    @property
    def calls_per_recipient(self) -> float:
        return sum(self.requests.values()) / self.recipients if self.recipients else 0.0


def sample_contacts(count: int) -> list[dict[str, Any]]:
    """`count` contacts spread over six zones; every seventh never consented, every ninth is tagged out."""
    contacts = []
    for i in range(count):
        contact: dict[str, Any] = {
            "id": f"sample{i:05d}",
            "email": f"reader{i}@example.com",
            "first_name": f"Reader{i}",
            "timezone": ZONES[i % len(ZONES)],
            "email_marketing": i % 7 != 6,
        }
        contacts.append(contact)
    return contacts


def play_campaign(
    campaign: Campaign, *, contacts: int = 24, on_progress: Callable[[str], None] = lambda line: None
) -> CampaignPlay:
    """Seed the contacts, create the campaign through the API, and run the virtual clock until it is done."""
    # The clock starts half an hour before the campaign does (the pieces that wait for it cost nothing here).
    clock = VirtualClock(max(START, campaign.schedule.starts_at(START) - timedelta(minutes=30)))
    stack = start_moto_stack(clock)
    try:
        for body in sample_contacts(contacts):
            stack.call_api("POST", "/v1/contacts", body, settle=False)
        on_progress(f"{contacts} contacts through POST /v1/contacts")
        stack.requests.counts.clear()
        created = stack.call_api("POST", "/v1/campaigns", dump(campaign, mode="json", exclude_none=True))
        if created.status >= 300:
            return CampaignPlay(created=created.body, status={})
        on_progress(f"POST /v1/campaigns → {created.status} {created.body.get('status')}")
        end = campaign.schedule.starts_at(clock.now()) + timedelta(days=2)
        stack.pump.run_until(end)
        status = stack.call_api("GET", "/v1/campaigns/" + campaign.id).body
        store: Any = stack.container.store
        messages = [m for m in store.all_messages() if m.flow_id == campaign.flow_id]
        counts: dict[str, int] = {}
        for message in messages:
            counts[message.status.value] = counts.get(message.status.value, 0) + 1
        sends = sorted(
            (m.sent_at or START, m.recipient or "", m.subject or m.body_preview or "")
            for m in messages
            if m.status.value == "sent"
        )
        requests = {f"{service} {operation}": n for (service, operation), n in sorted(stack.requests.counts.items())}
        recipients = int(status.get("progress", {}).get("recipients", 0))
        return CampaignPlay(created.body, status, sends, counts, requests, recipients)
    finally:
        stack.stop()

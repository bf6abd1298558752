"""Retargeting on a virtual clock (issue #16, ADR 0024): flows put shoppers into ad audiences and take them
out, through the worker, the real platform adapters and local fakes of the Meta, Google Ads and TikTok APIs."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

from nudge.adapters.ad_audiences import platforms
from nudge.clocks import VirtualClock
from nudge.domain.audiences import identifiers_for
from nudge.domain.model import Channel, MessageStatus
from nudge.domain.suppression import address_key
from nudge.local.ad_fakes import CREDENTIALS, FakeAdPlatforms
from nudge.local.simulation import Simulation
from nudge.settings import Settings
from tests.factories import checkout_started, contact, order_placed
from tests.flowkit import flows_dir

CART = """
id: cart_retargeting
name: Cart with retargeting
trigger: {event: checkout_started}
exit: [{event: order_placed}]
steps:
  - {id: wait_1h, type: wait, duration: 1h}
  - {id: reminder_1, type: email, template: abandoned_cart/reminder_1, subject: "You left something"}
  - {id: wait_23h, type: wait, duration: 23h}
  - {id: reminder_2, type: email, template: abandoned_cart/reminder_2, subject: "Your cart expires"}
  - {id: to_meta, type: audience, action: add, audience: cart_meta}
  - {id: to_google, type: audience, action: add, audience: cart_google}
  - {id: to_tiktok, type: audience, action: add, audience: cart_tiktok}
  - {id: wait_48h, type: wait, duration: 48h}
  - {id: reminder_3, type: email, template: abandoned_cart/reminder_3, subject: "Last call"}
"""
ORDERED = """
id: ordered
name: Ordered
category: transactional
trigger: {event: order_placed}
steps:
  - {id: out_of_meta, type: audience, action: remove, audience: cart_meta}
  - {id: out_of_google, type: audience, action: remove, audience: cart_google}
  - {id: out_of_tiktok, type: audience, action: remove, audience: cart_tiktok}
"""
AUDIENCES = {
    "cart_meta": "platform: meta\naudience_id: '23851234567890123'",
    "cart_google": "platform: google\naudience_id: '7001'\naccount_id: '1234567890'",
    "cart_tiktok": "platform: tiktok\naudience_id: '6990001'\naccount_id: '7000000001'",
}
META = ("meta", "23851234567890123")
GOOGLE = ("google", "7001")
TIKTOK = ("tiktok", "6990001")


def world(settings: Settings, clock: VirtualClock, tmp_path: Path) -> tuple[Simulation, FakeAdPlatforms]:
    directory = flows_dir(tmp_path, CART, ORDERED)
    (tmp_path / "audiences").mkdir()
    for name, text in AUDIENCES.items():
        (tmp_path / "audiences" / f"{name}.yaml").write_text(f"id: {name}\nname: {name}\n{textwrap.dedent(text)}\n")
    fake = FakeAdPlatforms()
    sim = Simulation(
        settings.model_copy(update={"flows_dir": directory}),
        clock,
        audience_platforms=platforms(lambda name: CREDENTIALS[name], fake),
    )
    return sim, fake


def hashes(platform: str, email: str) -> set[str]:
    ids = identifiers_for(platform, email, None)
    return {ids.email} if ids.email else set()


def test_cart_abandoned_added_after_the_second_reminder_then_removed_in_the_orders_worker_pass(
    settings: Settings, clock: VirtualClock, tmp_path: Path
) -> None:
    sim, fake = world(settings, clock, tmp_path)
    bob = contact("bob", ads_marketing=True)

    sim.send(checkout_started("e1", "c1", bob))
    sim.run_until(clock.now() + timedelta(hours=23, minutes=59))
    assert fake.members[META] == set()  # one reminder so far: not in the audience yet
    sim.run_until(clock.now() + timedelta(minutes=1))  # 24 h: the second reminder, then the audience step

    assert [e.subject for _, e in sim.mailer.sent] == ["You left something", "Your cart expires"]
    assert fake.members[META] == hashes("meta", "bob@example.com")
    assert fake.members[GOOGLE] == fake.members[TIKTOK] == hashes("google", "bob@example.com")
    added_at = clock.now()

    clock.advance(timedelta(hours=2))
    ordered_at = clock.now()
    sim.send(order_placed("e2", "c1", bob))  # the worker pass that follows the order's request

    assert clock.now() == ordered_at  # no virtual time passed: the same pass took Bob out
    assert fake.members[META] == fake.members[GOOGLE] == fake.members[TIKTOK] == set()
    assert fake.violations == []
    statuses = {m.step_id: (m.channel, m.status) for m in sim.store.messages.values() if m.channel is Channel.AUDIENCE}
    assert statuses == dict.fromkeys(
        ("to_meta", "to_google", "to_tiktok", "out_of_meta", "out_of_google", "out_of_tiktok"),
        (Channel.AUDIENCE, MessageStatus.SENT),
    )
    assert sim.container.audiences is not None
    stats = sim.container.audiences.stats("cart_meta")
    assert (stats.added, stats.removed, stats.failures) == (1, 1, 0)
    assert stats.last_sync_at == ordered_at and added_at < ordered_at
    sim.run_until(clock.now() + timedelta(days=3))
    assert len(sim.mailer.sent) == 2  # the run exited on the order: no third reminder


def test_an_order_before_the_second_reminder_never_adds_anyone(
    settings: Settings, clock: VirtualClock, tmp_path: Path
) -> None:
    sim, fake = world(settings, clock, tmp_path)
    carol = contact("carol", ads_marketing=True)

    sim.send(checkout_started("e1", "c1", carol))
    sim.run_until(clock.now() + timedelta(hours=2))
    sim.send(order_placed("e2", "c1", carol))
    sim.run_until(clock.now() + timedelta(days=4))

    assert all(not members for members in fake.members.values())
    requests = [p for p, _, _ in fake.requests]
    assert requests == []  # removing someone who was never in an audience uploads nothing


def test_without_ad_consent_nobody_is_uploaded(settings: Settings, clock: VirtualClock, tmp_path: Path) -> None:
    sim, fake = world(settings, clock, tmp_path)

    sim.send(checkout_started("e1", "c1", contact("dan")))  # email consent only: not advertising
    sim.run_until(clock.now() + timedelta(hours=25))

    reasons = {m.step_id: m.reason for m in sim.store.messages.values() if m.channel is Channel.AUDIENCE}
    assert reasons == {"to_meta": "no_ads_consent", "to_google": "no_ads_consent", "to_tiktok": "no_ads_consent"}
    assert fake.requests == []


def test_a_consent_withdrawal_removes_from_all_three_platforms(
    settings: Settings, clock: VirtualClock, tmp_path: Path
) -> None:
    sim, fake = world(settings, clock, tmp_path)
    erin = contact("erin", ads_marketing=True)
    sim.send(checkout_started("e1", "c1", erin))
    sim.run_until(clock.now() + timedelta(hours=25))
    assert fake.members[META] and fake.members[GOOGLE] and fake.members[TIKTOK]

    withdrawn = {**erin, "ads_marketing": False}
    sim.send({"id": "e2", "type": "profile_updated", "contact": withdrawn, "properties": {}})

    assert fake.members[META] == fake.members[GOOGLE] == fake.members[TIKTOK] == set()
    assert sim.container.audiences is not None
    assert all(sim.container.audiences.stats(a).removed == 1 for a in AUDIENCES)
    records = sim.store.consent_records(address_key(Channel.AUDIENCE, "erin@example.com"))
    assert [r.granted for r in records] == [True, False]  # when, and from where, each was given and withdrawn


def test_an_erasure_removes_from_every_audience_and_leaves_no_id(
    settings: Settings, clock: VirtualClock, tmp_path: Path
) -> None:
    sim, fake = world(settings, clock, tmp_path)
    sim.send(checkout_started("e1", "c1", contact("fay", ads_marketing=True)))
    sim.run_until(clock.now() + timedelta(hours=25))
    contact_id = next(iter(sim.store.contacts))

    sim.container.privacy.erase(contact_id)
    sim.settle()

    assert all(not members for members in fake.members.values())
    ledger = sim.container.audiences._ledger  # type: ignore[union-attr]
    assert ledger.entries == {}  # uploaded removals leave nothing behind, not even the hashes


def test_a_rate_limited_upload_is_retried_by_the_worker(
    settings: Settings, clock: VirtualClock, tmp_path: Path
) -> None:
    sim, fake = world(settings, clock, tmp_path)
    fake.fail("meta", 400, "meta_error_rate_limit.json")

    sim.send(checkout_started("e1", "c1", contact("gus", ads_marketing=True)))
    sim.run_until(clock.now() + timedelta(hours=24))
    assert fake.members[META] == set()  # throttled: the change waits in the ledger
    assert sim.container.audiences is not None
    assert sim.container.audiences.stats("cart_meta").failures == 1

    sim.run_until(clock.now() + timedelta(minutes=2))  # the audience's upload, queued again a minute later

    assert fake.members[META] == hashes("meta", "gus@example.com")
    assert [m for p, m, _ in fake.requests if p == "meta"] == ["POST", "POST"]


def test_the_report_counts_who_entered_each_audience_and_gives_it_no_revenue(
    settings: Settings, clock: VirtualClock, tmp_path: Path
) -> None:
    from nudge.domain import kpis

    sim, _ = world(settings, clock, tmp_path)
    sim.send(checkout_started("e1", "c1", contact("hal", ads_marketing=True)))
    sim.send(checkout_started("e2", "c2", contact("ivy")))  # no ad consent
    sim.run_until(clock.now() + timedelta(hours=25))
    sim.send(order_placed("e3", "c1", contact("hal", ads_marketing=True)))

    from nudge.services.reporting import build_report

    report = build_report(sim.store)
    steps = {(row.flow_id, row.step_id): row for row in report.steps}
    to_meta = steps[("cart_retargeting", "to_meta")]
    assert (to_meta.sent, to_meta.skipped, to_meta.orders) == (1, 1, 0)  # entered the audience; no_ads_consent
    assert steps[("ordered", "out_of_meta")].sent == 1
    assert steps[("cart_retargeting", "reminder_2")].orders == 1  # the last message Hal saw keeps the order
    assert not any(
        kpis.MessageFacts.of(m).touches() for m in sim.store.messages.values() if m.channel is Channel.AUDIENCE
    )


def test_a_change_left_sending_by_a_dead_worker_is_done_again_not_marked_unknown(
    settings: Settings, clock: VirtualClock, tmp_path: Path
) -> None:
    from dataclasses import replace

    from nudge.ports import StepWakeUp

    sim, fake = world(settings, clock, tmp_path)
    sim.send(checkout_started("e1", "c1", contact("jo", ads_marketing=True)))
    sim.run_until(clock.now() + timedelta(hours=25))
    [(key, record)] = [(k, m) for k, m in sim.store.messages.items() if m.step_id == "to_meta"]
    # As if the worker died after claiming the change, before recording it: SENDING, nothing in the ledger.
    sim.store.messages[key] = replace(record, status=MessageStatus.SENDING, attempt_at=clock.now())
    ledger = sim.container.audiences._ledger  # type: ignore[union-attr]
    ledger.entries = {k: e for k, e in ledger.entries.items() if k[0] != "cart_meta"}
    fake.members[META].clear()

    clock.advance(timedelta(minutes=6))  # past the grace a live send gets
    sim.queue.enqueue(StepWakeUp(record.contact_id, record.run_id, seq=-1, message_id=record.message_id))
    sim.settle()

    assert sim.store.messages[key].status is MessageStatus.SENT
    assert fake.members[META] == hashes("meta", "jo@example.com")


def test_a_segment_audience_follows_its_consenting_members_as_they_move(
    settings: Settings, clock: VirtualClock, tmp_path: Path
) -> None:
    sim, fake = world(settings, clock, tmp_path)
    (tmp_path / "audiences" / "first.yaml").write_text(
        "id: first\nname: F\nplatform: meta\naudience_id: '555'\nsource: {type: segment, segment: first_time_buyer}\n"
    )
    kim = contact("kim", ads_marketing=True)

    sim.send(order_placed("o1", "c1", kim))  # Kim becomes a first-time buyer
    sim.send(order_placed("o2", "c2", contact("lee")))  # so does Lee, without ad consent
    assert fake.members[("meta", "555")] == set()  # the upload waits a few minutes for other moves
    sim.run_until(clock.now() + timedelta(minutes=5))
    assert fake.members[("meta", "555")] == hashes("meta", "kim@example.com")

    sim.send(order_placed("o3", "c3", kim))  # a second order: a repeat buyer, out of the segment
    sim.run_until(clock.now() + timedelta(minutes=5))
    assert fake.members[("meta", "555")] == set()
    assert [m for p, m, u in fake.requests if "/555/" in u] == ["POST", "DELETE"]

"""Each AWS adapter against moto: the calls it makes and the semantics the services rely on.

The store tests are the Store contract: they run against the DynamoDB adapter on moto and against its
in-memory twin, so the twin the simulator and the backtest trust cannot drift from it.
"""

from __future__ import annotations

import email
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from nudge.adapters.scheduler import MAX_RETRY_ATTEMPTS, at_expression, parse_at_expression
from nudge.adapters.ses import SesMailer
from nudge.adapters.sns import SnsTexter
from nudge.domain import aggregates
from nudge.domain.model import Category, Channel, Contact, ContactPatch, Event, Message, MessageStatus, Run, RunStatus
from nudge.domain.suppression import ConsentRecord, Suppression, address_key
from nudge.local.moto_stack import MotoStack
from nudge.ports import ConflictError, EventDone, OutgoingEmail, OutgoingSms, PermanentSendError, StepWakeUp, Store
from tests.conftest import START


def test_scheduler_creates_a_one_time_schedule_with_retry_dlq_and_delete(moto_stack: MotoStack) -> None:
    scheduler = moto_stack.container.scheduler
    at = datetime(2026, 11, 2, 10, 0, 30, tzinfo=UTC)

    created = scheduler.schedule("r1-0001", at, StepWakeUp("c1", "r1", 1))
    again = scheduler.schedule("r1-0001", at, StepWakeUp("c1", "r1", 1))

    assert (created, again) == (True, False)
    detail = moto_stack.session.client("scheduler").get_schedule(Name="r1-0001", GroupName="nudge-steps")
    assert detail["ScheduleExpression"] == "at(2026-11-02T10:00:30)"
    assert detail["ScheduleExpressionTimezone"] == "UTC"
    assert detail["ActionAfterCompletion"] == "DELETE"
    assert detail["FlexibleTimeWindow"] == {"Mode": "OFF"}
    target = detail["Target"]
    assert target["Arn"] == moto_stack.settings.work_queue_arn  # Scheduler delivers wake-ups to the work queue
    assert target["RoleArn"] == moto_stack.settings.scheduler_role_arn
    assert target["DeadLetterConfig"]["Arn"] == moto_stack.settings.scheduler_dlq_arn
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == MAX_RETRY_ATTEMPTS
    assert target["Input"] == '{"contact_id":"c1","run_id":"r1","seq":1}'


def test_scheduler_cancel_deletes_and_tolerates_a_missing_schedule(moto_stack: MotoStack) -> None:
    scheduler = moto_stack.container.scheduler
    scheduler.schedule("r1-0001", START + timedelta(hours=1), StepWakeUp("c1", "r1", 1))

    scheduler.cancel("r1-0001")
    scheduler.cancel("r1-0001")

    assert moto_stack.pump.pending() == []


def test_at_expressions_round_trip_in_utc() -> None:
    paris = datetime.fromisoformat("2026-03-29T03:30:00+02:00")
    assert at_expression(paris) == "at(2026-03-29T01:30:00)"
    assert parse_at_expression(at_expression(paris)) == paris


def _email(**overrides: object) -> OutgoingEmail:
    base = OutgoingEmail(
        to="bob@example.com",
        from_address="hello@shop.example",
        subject="Hello ✓",
        html="<p>Hi <b>Bob</b></p>",
        text="Hi Bob",
        date=START,
        headers={"Message-ID": "<m1@shop.example>"},
        tags={"flow": "welcome", "step": "welcome_email"},
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


def test_ses_sends_raw_multipart_mail_with_our_headers(moto_stack: MotoStack) -> None:
    mailer = SesMailer(moto_stack.session.client("sesv2"))

    provider_id = mailer.send(_email())

    [sent] = moto_stack.sent_emails()
    assert sent.id == provider_id
    parsed = email.message_from_string(sent.raw_data)
    assert parsed["Subject"] == "Hello ✓" or "Hello" in str(parsed["Subject"])
    assert parsed["Message-ID"] == "<m1@shop.example>"
    assert parsed["Date"] == "Mon, 02 Nov 2026 09:00:00 +0000"
    assert [part.get_content_type() for part in parsed.walk()] == [
        "multipart/alternative",
        "text/plain",
        "text/html",
    ]


def test_ses_gets_the_bare_sender_address_and_the_mail_the_display_name(moto_stack: MotoStack) -> None:
    client = moto_stack.session.client("sesv2")
    requests: list[dict[str, object]] = []
    client.meta.events.register("provide-client-params.sesv2.SendEmail", lambda params, **_: requests.append(params))

    SesMailer(client).send(_email(from_address="Café Olé <hello@shop.example>"))

    [request] = requests
    assert request["FromEmailAddress"] == "hello@shop.example"  # what ses:FromAddress conditions compare
    [sent] = moto_stack.sent_emails()
    assert "From: =?utf-8?q?Caf=C3=A9_Ol=C3=A9?= <hello@shop.example>" in sent.raw_data


def test_ses_refuses_an_unverified_sender_as_permanent(moto_stack: MotoStack) -> None:
    mailer = SesMailer(moto_stack.session.client("sesv2"))

    with pytest.raises(PermanentSendError, match="MessageRejected"):
        mailer.send(_email(from_address="someone@unverified.example"))


def test_sns_publishes_an_sms_with_its_type(moto_stack: MotoStack) -> None:
    texter = SnsTexter(moto_stack.session.client("sns"))

    provider_id = texter.send(OutgoingSms(to="+14155550101", text="Your cart is waiting"))

    assert moto_stack.sent_sms()[provider_id] == ("+14155550101", "Your cart is waiting")


def _run(**overrides: object) -> Run:
    base = Run(
        run_id="r1",
        contact_id="c1",
        flow_id="abandoned_cart",
        status=RunStatus.ACTIVE,
        cursor="wait_1h",
        seq=0,
        trigger_event_id="e1",
        trigger={"checkout_id": "chk_1"},
        started_at=START,
        updated_at=START,
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


def test_store_allows_one_active_run_per_contact_and_flow(store: Store) -> None:

    started = store.start_run(_run(), None)
    duplicate = store.start_run(_run(), None)
    other = store.start_run(_run(run_id="r2"), store.flow_slots("c1")["abandoned_cart"])

    assert started is not None and started.version == 1
    assert duplicate is None and other is None
    assert [r.run_id for r in store.active_runs("c1")] == ["r1"]
    slot = store.flow_slots("c1")["abandoned_cart"]
    assert (slot.active_run_id, slot.started_count, slot.last_started_at) == ("r1", 1, START)


def test_store_save_run_is_optimistic_and_ending_frees_the_slot(store: Store) -> None:
    started = store.start_run(_run(), None)
    assert started is not None

    moved = store.save_run(replace(started, seq=1), expected_version=1)
    with pytest.raises(ConflictError):
        store.save_run(replace(started, seq=1), expected_version=1)
    store.save_run(replace(moved, status=RunStatus.COMPLETED, cursor=None), expected_version=2)

    assert store.active_runs("c1") == []
    slot = store.flow_slots("c1")["abandoned_cart"]
    assert slot.active_run_id is None and slot.started_count == 1
    stale = replace(slot, started_count=0)  # read before another start landed
    assert store.start_run(_run(run_id="r2"), stale) is None
    assert store.start_run(_run(run_id="r2"), slot) is not None
    assert store.flow_slots("c1")["abandoned_cart"].started_count == 2
    stored = store.get_run("c1", "r1")
    assert stored is not None and (stored.status, stored.version) == (RunStatus.COMPLETED, 3)


def test_store_contact_writes_are_optimistic(store: Store) -> None:
    saved = store.save_contact(Contact(contact_id="c1", email="a@example.com", properties={"vip": True}), 0)

    with pytest.raises(ConflictError):
        store.save_contact(Contact(contact_id="c1"), 0)
    store.save_contact(replace(saved, first_name="Ann"), saved.version)

    stored = store.get_contact("c1")
    assert stored is not None
    assert (stored.email, stored.first_name, stored.properties, stored.version) == (
        "a@example.com",
        "Ann",
        {"vip": True},
        2,
    )


def test_a_contact_write_carries_its_consent_records_all_or_none(store: Store) -> None:
    granted = ConsentRecord(address_key(Channel.EMAIL, "a@example.com"), Channel.EMAIL, True, START, "test", "c1")
    saved = store.save_contact(Contact(contact_id="c1", email="a@example.com", email_marketing=True), 0, [granted])

    withdrawn = replace(granted, granted=False, at=START + timedelta(hours=1))
    with pytest.raises(ConflictError):
        store.save_contact(replace(saved, email_marketing=False), 0, [withdrawn])  # a stale version: nothing written

    assert store.consent_records(granted.address_key) == [granted]


def test_an_event_is_recorded_with_its_contact_in_one_write(store: Store) -> None:
    event = Event("e1", "checkout_started", ContactPatch(external_id="c1"), {}, START)
    contact = Contact(contact_id="c1", email="a@example.com")

    saved = store.record_event(event, START, contact, 0)
    with pytest.raises(ConflictError):  # the contact moved: neither is written again
        store.record_event(replace(event, event_id="e2"), START, contact, 0)
    store.finish_event("e1", {"started": []})
    with pytest.raises(EventDone):  # processed: a retry writes nothing, not even the contact
        store.record_event(event, START, replace(contact, first_name="Ann"), 1)
    quiet = replace(event, event_id="e3", type="page_viewed")
    store.record_event(quiet, START, None, 1, outcome={"started": []})  # processed at once: nothing left to do

    assert saved is not None and saved.version == 1
    stored = store.get_contact("c1")
    assert stored is not None and (stored.version, stored.first_name) == (1, None)
    assert {e["event_id"] for e in store.events_for("c1")} == {"e1", "e3"}
    assert not store.begin_event(quiet, START) and store.begin_event(replace(event, event_id="e2"), START)


def test_a_wake_up_reads_its_run_contact_outbox_and_addresses_in_one_call(store: Store) -> None:
    started = store.start_run(_run(), None)
    assert started is not None
    store.save_contact(Contact(contact_id="c1", email="a@example.com"), 0)
    message = Message(
        "c1", "r1#s", "r1", "abandoned_cart", "s", Channel.EMAIL, Category.MARKETING, MessageStatus.PENDING, START
    )
    store.commit_advance(replace(started, outbox=("r1#s",)), 1, [message])
    blocked, clear = address_key(Channel.EMAIL, "a@example.com"), address_key(Channel.SMS, "+14155550101")
    store.suppress(blocked, Suppression.BOUNCE, START)

    reads = store.run_with_context("c1", "r1", ["r1#s", "r1#gone"], [blocked, clear])
    missing = store.run_with_context("c1", "r9")

    assert reads.run is not None and (reads.run.version, reads.run.outbox) == (2, ("r1#s",))
    assert reads.contact is not None and reads.contact.email == "a@example.com"
    assert list(reads.messages) == ["r1#s"] and reads.messages["r1#s"].run_version == 2
    assert reads.addresses == {blocked: store.address_state(blocked), clear: None}
    assert Suppression.BOUNCE in reads.addresses[blocked].suppressed  # type: ignore[union-attr]
    assert (missing.run, missing.messages, missing.addresses) == (None, {}, {})
    assert store.active_runs("c1", store.flow_slots("c1")) == store.active_runs("c1")


def test_store_keeps_whatsapp_consent_and_the_last_inbound_message(store: Store) -> None:
    contact = Contact(contact_id="c1", phone="+14155550101", whatsapp_marketing=True, whatsapp_inbound_at=START)
    store.save_contact(contact, 0)

    stored = store.get_contact("c1")
    assert stored is not None
    assert (stored.whatsapp_marketing, stored.whatsapp_inbound_at, stored.sms_marketing) == (True, START, None)


def test_store_keeps_a_contacts_aggregates(store: Store) -> None:
    counted = aggregates.updated(
        aggregates.Aggregates(),
        "e1",
        "order_placed",
        {"order_id": "o1", "total": 42.5, "lines": [{"product_id": "mug", "category": "kitchen"}]},
        START,
    )
    store.save_contact(Contact(contact_id="c1", aggregates=counted), 0)

    stored = store.get_contact("c1")
    assert stored is not None
    assert stored.aggregates == counted
    assert stored.aggregates.total_spent == Decimal("42.50")


def test_store_finds_contacts_due_for_review_through_the_sparse_index(store: Store) -> None:
    for contact_id, due in [
        ("due_today", START - timedelta(hours=2)),
        ("due_3_days_ago", START - timedelta(days=3)),
        ("missed_8_days_ago", START - timedelta(days=8)),  # beyond the lookback: waits for its next event
        ("due_tomorrow", START + timedelta(days=1)),
        ("due_in_an_hour", START + timedelta(hours=1)),
    ]:
        store.save_contact(Contact(contact_id=contact_id, segments=("first_time_buyer",), review_at=due), 0)
    store.save_contact(Contact(contact_id="never", segments=("lapsed",)), 0)

    assert sorted(store.contacts_to_review(START)) == ["due_3_days_ago", "due_today"]
    stored = store.get_contact("due_today")
    assert stored is not None
    assert (stored.segments, stored.review_at) == (("first_time_buyer",), START - timedelta(hours=2))


def test_reviews_are_a_keys_only_index(moto_stack: MotoStack) -> None:
    index = moto_stack.session.client("dynamodb").describe_table(TableName="nudge-contacts")["Table"]
    assert [(i["IndexName"], i["Projection"]["ProjectionType"]) for i in index["GlobalSecondaryIndexes"]] == [
        ("review", "KEYS_ONLY")
    ]


def _a_month_of_sends(store: Store) -> None:
    """c1: a daily marketing email for 30 days, one skipped SMS, one decided but not sent yet; c2: one send."""
    history: list[Message] = []
    for day in range(30):  # a month of daily sends, then one skipped, and one decided but not sent yet
        message = Message(
            "c1",
            f"r{day}#s",
            f"r{day}",
            "welcome",
            "s",
            Channel.EMAIL,
            Category.MARKETING,
            MessageStatus.PENDING,
            START + timedelta(days=day),
            priority=day % 3,
        )
        sent = store.settle_message(message, MessageStatus.SENT, sent_at=START + timedelta(days=day))
        assert sent is not None
        history.append(sent)
    skipped = Message("c1", "rs#s", "rs", "welcome", "s", Channel.SMS, Category.MARKETING, MessageStatus.PENDING, START)
    store.settle_message(skipped, MessageStatus.SKIPPED, reason="no_sms_marketing_consent", sent_at=START)
    decided = replace(skipped, message_id="rc#s", run_id="rc", channel=Channel.EMAIL)
    store.settle_message(decided, MessageStatus.PENDING, sent_at=START + timedelta(days=29, hours=1))
    store.settle_message(replace(history[0], contact_id="c2"), MessageStatus.SENT, sent_at=START + timedelta(days=29))


def test_recent_sends_are_the_sends_from_since_on(store: Store) -> None:
    _a_month_of_sends(store)

    found = store.recent_sends("c1", START + timedelta(days=23))

    # The decided one counts: it is going out, and a burst spread over send slots must not slip past a cap.
    assert [(r.sent_at, r.priority) for r in found] == [
        *[(START + timedelta(days=d), d % 3) for d in range(23, 30)],
        (START + timedelta(days=29, hours=1), 0),
    ]
    assert {(r.channel, r.category, r.flow_id) for r in found} == {(Channel.EMAIL, Category.MARKETING, "welcome")}


def test_recent_sends_reads_the_sent_index_from_since_on(moto_stack: MotoStack) -> None:
    store = moto_stack.container.store
    _a_month_of_sends(store)
    queries: list[dict[str, object]] = []
    [client] = store.botocore_clients()  # type: ignore[attr-defined]
    client.meta.events.register("provide-client-params.dynamodb.Query", lambda params, **_: queries.append(params))

    store.recent_sends("c1", START + timedelta(days=23))

    [query] = queries
    assert (query["IndexName"], query["ConsistentRead"]) == ("by-sent-at", True)


def test_store_finds_a_message_by_provider_id_and_erases_a_contact_whole(store: Store) -> None:
    kept = Contact(contact_id="c2", review_at=START)
    for contact_id in ("c1", "c2"):
        store.save_contact(replace(kept, contact_id=contact_id), 0)
        started = store.start_run(_run(contact_id=contact_id), None)
        assert started is not None
        store.save_run(replace(started, status=RunStatus.COMPLETED, cursor=None), expected_version=1)
        store.start_run(_run(contact_id=contact_id, run_id="r2"), store.flow_slots(contact_id)["abandoned_cart"])
        message = Message(
            contact_id,
            "r1#s",
            "r1",
            "abandoned_cart",
            "s",
            Channel.EMAIL,
            Category.MARKETING,
            MessageStatus.PENDING,
            START,
        )
        store.settle_message(message, MessageStatus.SENT, provider_id=f"p-{contact_id}", sent_at=START)

    found = store.message_by_provider_id("p-c1")
    counts = store.erase_contact("c1")

    assert found is not None and (found.contact_id, found.message_id) == ("c1", "r1#s")
    assert counts["contacts"] == 1 and counts["messages"] == 1 and counts["runs"] == 3  # two runs, one slot
    assert store.get_contact("c1") is None and store.runs_for("c1") == [] and store.messages_for("c1") == []
    assert store.flow_slots("c1") == {} and store.recent_sends("c1", START) == []
    assert list(store.contacts_to_review(START)) == ["c2"]
    assert sorted(r.run_id for r in store.runs_for("c2")) == ["r1", "r2"]
    assert store.recent_sends("c2", START)[0].flow_id == "abandoned_cart"


@pytest.mark.parametrize("twin", ["dynamodb", "memory"])
def test_contact_refs_forget_every_ref_of_one_contact_only(moto_stack: MotoStack, twin: str) -> None:
    from nudge.adapters.memory import MemoryContactRefs

    refs = moto_stack.container.refs if twin == "dynamodb" else MemoryContactRefs()
    now = moto_stack.clock.now()
    for ref, contact_id in (("order:1", "c_1"), ("anon:a", "c_1"), ("order:2", "c_2")):
        refs.link(ref, contact_id, now)

    assert refs.forget("c_1") == 2
    assert (refs.resolve("order:1"), refs.resolve("anon:a"), refs.resolve("order:2")) == (None, None, "c_2")
    assert refs.forget("c_1") == 0


@pytest.mark.parametrize("twin", ["dynamodb", "memory"])
def test_forgetting_a_contact_takes_it_off_every_waitlist_it_joined(moto_stack: MotoStack, twin: str) -> None:
    from nudge.adapters.memory import MemoryContactRefs

    refs = moto_stack.container.refs if twin == "dynamodb" else MemoryContactRefs()
    now = moto_stack.clock.now()
    refs.wait("shopify:a:variant:1", "c_1", now)
    refs.wait("shopify:a:variant:2", "c_1", now)
    refs.wait("shopify:a:variant:1", "c_2", now)
    refs.link("order:1", "c_1", now)

    assert refs.forget("c_1") == 3  # the order's ref and the two waitlists'

    assert refs.waiting("shopify:a:variant:1") == ["c_2"]
    assert refs.waiting("shopify:a:variant:2") == []
    assert refs.forget("c_1") == 0 and refs.forget("c_2") == 1
    assert refs.waiting("shopify:a:variant:1") == []


@pytest.mark.parametrize("twin", ["dynamodb", "memory"])
def test_contact_refs_page_through_one_storefronts_contacts_only(moto_stack: MotoStack, twin: str) -> None:
    import json

    from nudge.adapters.memory import MemoryContactRefs

    refs = moto_stack.container.refs if twin == "dynamodb" else MemoryContactRefs()
    now = moto_stack.clock.now()
    for n in range(5):
        refs.link(f"shopify:a.myshopify.com:order:{n}", f"c{n}", now)
    refs.claim("shopify:a.myshopify.com:checkout:9", "c0", "evt", now)  # a second ref of c0
    refs.link("shopify:b.myshopify.com:order:1", "c9", now)  # another shop
    refs.link("anon:xyz", "c8", now)  # not a storefront's

    found, cursor = [], None
    for _ in range(10):
        page, cursor = refs.contacts_of("shopify:a.myshopify.com", cursor, 2)
        found += page
        assert len(page) <= 2
        if cursor is None:
            break
        cursor = json.loads(json.dumps(cursor))  # cursors travel as JSON in a jobs-queue message

    assert found == ["c0", "c0", "c1", "c2", "c3", "c4"]  # in contact order, once per ref
    assert refs.contacts_of("shopify:nowhere.myshopify.com") == ([], None)


@pytest.mark.parametrize("twin", ["dynamodb", "memory"])
def test_pending_signups_round_trip_and_expire(moto_stack: MotoStack, twin: str) -> None:
    from datetime import timedelta

    from nudge.adapters.dynamodb.access import DynamoPendingSignups
    from nudge.adapters.memory import MemoryPendingSignups
    from nudge.ports import PendingSignup, PendingSignups

    wired = moto_stack.container.subscribe._pending  # type: ignore[attr-defined]
    assert isinstance(wired, DynamoPendingSignups)
    signups: PendingSignups = wired if twin == "dynamodb" else MemoryPendingSignups()
    now = moto_stack.clock.now()
    signup = PendingSignup(
        "s1", "kh", "jo@example.com", "Jo", "+14155550123", True, "footer", now, now + timedelta(days=7)
    )
    waiting = PendingSignup("s2", "kh", "jo@example.com", None, None, False, None, now, now + timedelta(days=7), "808")

    signups.put(signup)
    signups.put(waiting)

    assert signups.get("s2", now) == waiting  # a "notify me" form's variant survives until the click
    assert signups.get("s1", now) == signup
    assert signups.get("s1", now + timedelta(days=7)) is None
    assert signups.get("nope", now) is None


def test_scan_segments_split_the_contacts_and_a_cursor_resumes_after_its_contact(store: Store) -> None:
    import json

    everyone = [f"c{i:02d}" for i in range(30)]
    for contact_id in everyone:
        store.save_contact(Contact(contact_id=contact_id), expected_version=0)

    segments = [list(store.contacts_segment(segment, 4)) for segment in range(4)]

    seen = [contact.contact_id for found in segments for contact, _ in found]
    assert sorted(seen) == everyone  # each contact in exactly one segment
    assert max(len(found) for found in segments) < len(everyone)  # and the segments really split the table
    found = max(segments, key=len)
    cursor = json.loads(json.dumps(found[1][1]))  # cursors travel as JSON in a jobs-queue message
    rest = [contact.contact_id for contact, _ in store.contacts_segment(segments.index(found), 4, cursor)]
    assert rest == [contact.contact_id for contact, _ in found[2:]]
    assert found[-1][1] is None  # the segment's last contact: nothing to resume


def test_the_job_log_keeps_one_record_per_piece_and_day(store: Store) -> None:
    store.record_piece("2026-11-03", "score-0of8-0", {"changed": 1}, START)
    store.record_piece("2026-11-03", "score-0of8-0", {"changed": 2}, START)  # the piece, done again
    store.record_piece("2026-11-03", "base-0of1-0", {"buyers": 5}, START)
    store.record_piece("2026-11-04", "base-0of1-0", {"buyers": 6}, START)

    assert store.pieces_of("2026-11-03") == {"score-0of8-0": {"changed": 2}, "base-0of1-0": {"buyers": 5}}
    assert store.pieces_of("2026-11-05") == {}


def test_a_campaign_piece_moves_its_record_only_from_where_it_started(store: Store) -> None:
    day, key = "campaign.news", "segment-0of8"
    store.record_piece(day, key, {"at": 1}, START, origin="start", position="p1")  # a first checkpoint
    store.record_piece(day, key, {"at": 2}, START, origin="start", position="p2")  # the same piece, on
    store.record_piece(day, key, {"at": 2}, START, origin="start", position="p2")  # its retry (or a copy)
    store.record_piece(day, key, {"at": 3}, START, origin="p2", position="p3")  # the next piece, from p2
    with pytest.raises(ConflictError):  # a stale copy of the first piece cannot rewind the segment
        store.record_piece(day, key, {"at": 1}, START, origin="start", position="p1")
    with pytest.raises(ConflictError):  # nor can a piece that starts elsewhere
        store.record_piece(day, key, {"at": 9}, START, origin="p9", position="p10")

    assert store.pieces_of(day) == {key: {"at": 3}}


def test_versioned_documents_are_written_only_at_the_version_read(store: Store) -> None:
    assert store.get_versioned_document("campaign.x") is None
    assert store.put_versioned_document("campaign.x", {"status": "sending"}, START, 0) == 1
    with pytest.raises(ConflictError):
        store.put_versioned_document("campaign.x", {"status": "new"}, START, 0)  # a second create loses

    assert store.put_versioned_document("campaign.x", {"status": "paused"}, START, 1) == 2
    with pytest.raises(ConflictError):  # a writer that read version 1 loses to the pause: nothing written
        store.put_versioned_document("campaign.x", {"status": "sent"}, START, 1)

    assert store.get_versioned_document("campaign.x") == ({"status": "paused"}, 2)
    assert store.get_document("campaign.x") == {"status": "paused"}
    store.put_document("legacy", {"a": 1}, START)  # written unversioned: version 0, and writable at it
    assert store.get_versioned_document("legacy") == ({"a": 1}, 0)
    assert store.put_versioned_document("legacy", {"a": 2}, START, 0) == 1


@pytest.mark.parametrize("twin", ["dynamodb", "memory"])
def test_a_waitlist_spreads_over_items_and_leaves_only_whom_it_told(moto_stack: MotoStack, twin: str) -> None:
    from nudge.adapters.dynamodb.access import WAIT_SHARDS, wait_ref
    from nudge.adapters.memory import MemoryContactRefs

    refs = moto_stack.container.refs if twin == "dynamodb" else MemoryContactRefs()
    now = moto_stack.clock.now()
    waiting = [f"contact-{n:04}" for n in range(400)]
    for contact_id in waiting:
        refs.wait("shopify:a:variant:1", contact_id, now)
    refs.wait("shopify:a:variant:2", "someone-else", now)

    assert refs.waiting("shopify:a:variant:1") == waiting
    refs.unwait("shopify:a:variant:1", waiting[:100])
    assert refs.waiting("shopify:a:variant:1") == waiting[100:]
    assert refs.waiting("shopify:a:variant:2") == ["someone-else"]
    if twin == "dynamodb":
        # One item holds at most 400 KB (~10,000 ids): the list is spread evenly over WAIT_SHARDS of them
        table = moto_stack.session.resource("dynamodb").Table(moto_stack.settings.contact_refs_table)
        sizes = [
            len(table.get_item(Key={"ref": wait_ref("shopify:a:variant:1", n)})["Item"]["waiting"])
            for n in range(WAIT_SHARDS)
        ]
        assert sum(sizes) == 300 and max(sizes) < 2 * 300 / WAIT_SHARDS


def test_in_lambda_the_sqs_and_scheduler_clients_are_made_at_their_first_call(moto_stack: MotoStack) -> None:
    """A container built as a function builds it (no session: clients on the pynamodb connection's botocore
    session) has its queue and scheduler after warm(), but their clients only once a call needs them; the
    calls then go out as before (ADR 0020, Decision 9)."""
    from nudge import wiring

    container = wiring.build_aws(moto_stack.settings, moto_stack.clock, check=False)
    container.warm("queue", "scheduler")
    queue_client, scheduler_client = container.queue._client, container.scheduler._client  # type: ignore[attr-defined]
    assert (queue_client._made, scheduler_client._made) == (None, None)

    container.queue.enqueue(StepWakeUp("c-lazy", "r-lazy", 1))
    assert container.scheduler.schedule("r-lazy-0002", START + timedelta(hours=2), StepWakeUp("c-lazy", "r-lazy", 2))

    assert queue_client._made is not None and scheduler_client._made is not None
    sqs = moto_stack.session.client("sqs")
    received = sqs.receive_message(QueueUrl=moto_stack.settings.work_queue_url, MaxNumberOfMessages=10)
    assert any('"run_id":"r-lazy"' in message["Body"] for message in received.get("Messages", []))
    group = moto_stack.settings.schedule_group
    assert moto_stack.session.client("scheduler").get_schedule(Name="r-lazy-0002", GroupName=group)["Name"]

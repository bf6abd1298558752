"""The story `make demo` tells, asserted exactly: who gets what, when, read back from moto's SES and SNS."""

from __future__ import annotations

from decimal import Decimal

import pytest

from nudge.local.demo import DemoResult, campaign_line, run_demo

pytestmark = pytest.mark.xdist_group("demo")  # one worker plays the demo once for the module

NEWSLETTER = "campaign.november_newsletter"
EXPECTED = [
    ("Mon 11-02 09:00", "alice@example.com", "welcome", "welcome_email", "email", "Welcome, Alice!"),
    (
        "Mon 11-02 11:00",
        "bob@example.com",
        "abandoned_cart",
        "reminder_1",
        "email",
        "You left something in your cart",
    ),
    (
        "Tue 11-03 10:00",
        "bob@example.com",
        "abandoned_cart",
        "reminder_2",
        "email",
        "Bob, your cart is about to expire",
    ),
    (
        "Tue 11-03 15:00",
        "carol@example.com",
        "abandoned_cart",
        "reminder_1",
        "email",
        "You left something in your cart",
    ),
    # Bob's number is +1 415 (San Francisco): 10:00 UTC is 02:00 there, so the SMS waits for 08:00 local.
    (
        "Tue 11-03 16:00",
        "+14155550101",
        "abandoned_cart",
        "reminder_2_sms",
        "sms",
        "Linen & Clay: Bob, your cart is still waiting: https://shop.example/checkouts/chk_bob/recover"
        " Reply STOP to opt out",
    ),
    (
        "Tue 11-03 18:00",
        "carol@example.com",
        "post_purchase",
        "thank_you",
        "email",
        "Thank you for your order #1001",
    ),
    (
        "Wed 11-04 09:00",
        "alice@example.com",
        "welcome",
        "incentive_email",
        "email",
        "Alice, here is 10% off your first order",
    ),
    (
        "Thu 11-05 16:00",  # two days after the SMS
        "bob@example.com",
        "abandoned_cart",
        "reminder_3",
        "email",
        "Last call: your cart is still waiting",
    ),
    ("Sat 11-07 09:00", "alice@example.com", "welcome", "story_email", "email", "Why we started"),
    # The November newsletter at 09:00 in each recipient's zone: Bob's is San Francisco's (his phone); the
    # three lapsed customers are excluded (the win-back flow speaks to them).
    *[
        (
            "Tue 11-10 09:00",
            f"{name}@example.com",
            NEWSLETTER,
            "email",
            "email",
            f"{name.title()}, what is new in November",
        )
        for name in ("alice", "carol", "dan", "erin")
    ],
    ("Tue 11-10 17:00", "bob@example.com", NEWSLETTER, "email", "email", "Bob, what is new in November"),
    (
        "Tue 11-17 18:00",
        "carol@example.com",
        "post_purchase",
        "review_request",
        "email",
        "How are you liking it, Carol?",
    ),
]


@pytest.fixture(scope="module")
def demo() -> DemoResult:
    """One play of the demo (about 6 s on moto) that every test here reads: the play itself changes nothing."""
    return run_demo()


def test_the_demo_story_sends_exactly_these_messages_at_these_times(demo: DemoResult) -> None:
    result = demo

    timeline = [(f"{r.at:%a %m-%d %H:%M}", r.contact, r.flow, r.step, r.channel, r.text) for r in result.timeline]
    assert timeline == EXPECTED
    assert result.per_flow == {"welcome": 3, "abandoned_cart": 5, "post_purchase": 2, NEWSLETTER: 5}
    # Carol's order ended her cart flow and started post-purchase; the retried webhook changed nothing.
    outcomes = [(c.status, c.body["started"], c.body["exited"], c.body["duplicate"]) for _, _, c in result.api_calls]
    assert outcomes == [
        (202, ["sunset", "welcome"], [], False),
        (202, ["abandoned_cart"], [], False),
        (202, ["abandoned_cart"], [], False),
        (202, ["post_purchase", "sunset", "win_back"], ["abandoned_cart"], False),
        (200, [], [], True),
    ]
    assert result.api_calls[3][2].body["converted"] == ["abandoned_cart"]
    assert result.requests[("sesv2", "SendEmail")] == 14
    assert result.requests[("sns", "Publish")] == 1
    # 2 runs' first steps (welcome's and post-purchase's; the other 5 runs start with a fixed wait, armed at
    # their start: engine.new_run), 8 wake-ups (one waits for the morning in San Francisco), and the
    # newsletter's 5 recipients' first steps (Scheduler wakes each at its local 09:00)
    assert result.wake_ups == 15


def test_the_demo_sends_its_newsletter_through_the_jobs_queue_and_reports_it(demo: DemoResult) -> None:
    assert demo.campaign is not None and (demo.campaign.status, demo.campaign.body["status"]) == (202, "scheduled")
    assert campaign_line(demo) == (
        "november_newsletter: sent; 5 recipients of 8 contacts (0 without consent); "
        "5 sent, 0 opened, 0 clicked, 0 orders (0.00)"
    )


def test_the_demo_imports_history_and_runs_the_daily_job_every_morning(demo: DemoResult) -> None:
    result = demo

    assert result.imported is not None and (result.imported.orders_imported, len(result.imported.contacts)) == (8, 5)
    assert [f"{at:%m-%d %H:%M}" for at, _ in result.daily_runs] == [f"11-{d:02d} 04:00" for d in range(3, 24)]
    first, last = result.daily_runs[0][1], result.daily_runs[-1][1]
    assert (first["buyers"], first["rescored"], first["copurchase_orders"]) == (5, 5, 8)  # the imported customers
    assert (last["buyers"], last["copurchase_orders"], last["products"]) == (6, 9, 6)  # Carol's live order added
    # RFM by hand on 11-23 04:00 over six buyers: days since the last order 19 (Carol), 29 (Dan), 33 (Erin),
    # 110 (Gina), 126 (Frank), 164 (Hal); orders 1, 3, 2, 1, 1, 1; spent 100, 145, 109, 73, 66, 42.
    people = {line.email.split("@")[0]: (line.stage, line.rfm, line.orders, line.spent) for line in result.contacts}
    assert people == {
        "alice": ("subscriber", "-", 0, "0.00"),
        "bob": ("subscriber", "-", 0, "0.00"),
        "carol": ("first_time_buyer", "513", 1, "100.00"),
        "dan": ("vip", "555", 3, "145.00"),
        "erin": ("repeat_buyer", "444", 2, "109.00"),
        "frank": ("lapsed", "211", 1, "66.00"),
        "gina": ("lapsed", "312", 1, "73.00"),
        "hal": ("lapsed", "111", 1, "42.00"),
    }
    # Carol bought a mug and a kettle: the history bought beans with both (2 + 2), filters with the kettle (3);
    # the apron is the best seller she does not have.
    assert result.recommended == {"carol@example.com": ["Coffee beans", "Paper filters (100)", "Linen apron"]}


def test_the_demo_report_credits_carols_order_to_her_cart_reminder(demo: DemoResult) -> None:
    report = demo.report
    assert report is not None

    flows = {r.flow_id: (r.entered, r.converted, r.sent, r.orders, r.revenue) for r in report.flows}
    assert flows["abandoned_cart"] == (2, 1, 5, 1, Decimal("100.00"))  # Carol's $100 order, 4 h after reminder_1
    assert flows["post_purchase"] == (1, 0, 2, 0, Decimal("0.00"))  # her receipt came after the order
    steps = {(r.flow_id, r.step_id): (r.sent, r.orders, r.revenue_per_recipient) for r in report.steps}
    assert steps[("abandoned_cart", "reminder_1")] == (2, 1, Decimal("50.00"))  # Bob and Carol got it

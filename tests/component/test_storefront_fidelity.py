"""Issue 12: what real storefront payloads do for the shop, through the real webhook handler on moto.

One test (or a few) per numbered class of the issue, each on the virtual clock over the weeks that follow.
Payloads start from the recorded fixtures and change only what the case is about.
"""

from __future__ import annotations

import base64
import copy
import email
import json
import re
from datetime import timedelta
from email.header import decode_header, make_header
from typing import Any

import pytest

from nudge.domain.model import Channel, RunStatus, contact_id_for
from nudge.domain.suppression import address_key
from nudge.handlers import sms_inbound
from nudge.local.lambda_events import FakeLambdaContext
from nudge.local.moto_stack import DEV_SHOPIFY_SHOP, MotoStack
from nudge.ports import KeyKind
from nudge.services import disconnect
from tests.component.test_subscribe import SHOP, plain_text
from tests.component.test_webhooks import ERIN, FORGERIES, everything_stored, shopify, woo
from tests.conftest import START
from tests.events_helpers import inbound_sms
from tests.factories import contact, subscribed
from tests.unit.test_storefront_mapping import fixture

CHECKOUT_ID = 981820079255243537
ORDER_ID = 820982911946154508
CUSTOMER_ID = 603851970716743426


def checkout(**changes: Any) -> dict[str, Any]:
    return fixture("shopify/checkouts_create.json") | changes


def order(**changes: Any) -> dict[str, Any]:
    return fixture("shopify/orders_create.json") | changes


def subjects(stack: MotoStack, to: str | None = None) -> list[str]:
    found = []
    for sent in stack.sent_emails():
        parsed = email.message_from_string(sent.raw_data)
        if to is None or to in str(parsed["To"]):
            found.append(str(make_header(decode_header(parsed["Subject"]))))
    return found


def bodies(stack: MotoStack, subject_start: str) -> list[str]:
    return [m.raw_data for m in stack.sent_emails() if f"Subject: {subject_start}" in m.raw_data]


def runs(stack: MotoStack, contact_id: str, flow_id: str) -> list[tuple[RunStatus, str | None]]:
    return [(r.status, r.exit_reason) for r in stack.container.store.runs_for(contact_id) if r.flow_id == flow_id]


def weeks_pass(stack: MotoStack, days: int = 16) -> None:
    stack.pump.run_until(START + timedelta(days=days))


CART_REMINDERS = ("You left something", "your cart is about to expire", "Last call")


def cart_reminders(stack: MotoStack) -> list[str]:
    return [s for s in subjects(stack) if any(r in s for r in CART_REMINDERS)]


# 1. Welcome offers only to new subscribers ------------------------------------------------------------------


def test_1_existing_subscribers_and_buyers_get_no_welcome_offer(moto_stack: MotoStack) -> None:
    # Given, after install, Shopify's first update of a long-standing subscriber (consent from 2024)
    veteran = fixture("shopify/customers_create.json") | {
        "email": "vip@example.com",
        "orders_count": 7,
        "created_at": "2024-03-01T10:00:00-05:00",
        "email_marketing_consent": {"state": "subscribed", "consent_updated_at": "2024-03-01T10:00:00-05:00"},
    }
    old = shopify(moto_stack, "customers/update", veteran, "wh-c1")
    # And a brand-new buyer who ticked the box at checkout: the order, then the customers/update that follows it
    # (Shopify may still say orders_count 0 at that moment)
    shopify(moto_stack, "orders/create", order(), "wh-o1")
    buyer = fixture("shopify/orders_create.json")["customer"] | {"orders_count": 0}
    after_order = shopify(moto_stack, "customers/update", buyer, "wh-c2")
    weeks_pass(moto_stack, days=7)

    # Then neither counts as a signup, and nobody gets "10% off your first order"
    assert (old.json()["type"], old.json()["started"]) == ("identify", [])
    assert (after_order.json()["type"], after_order.json()["started"]) == ("identify", [])
    assert not [s for s in subjects(moto_stack) if "10% off" in s or s.startswith("Welcome")]


def test_1_a_new_subscriber_still_gets_the_welcome_series(moto_stack: MotoStack) -> None:
    fresh = shopify(moto_stack, "customers/create", fixture("shopify/customers_create.json"), "wh-c1")
    weeks_pass(moto_stack, days=3)

    assert (fresh.json()["type"], fresh.json()["started"]) == ("subscribed", ["sunset", "welcome"])
    assert [s for s in subjects(moto_stack) if "10% off" in s] == ["Dana, here is 10% off your first order"]


# 2. No cart reminders after a purchase ---------------------------------------------------------------------


def test_2a_a_completed_checkout_arriving_after_its_order_starts_no_cart_flow(moto_stack: MotoStack) -> None:
    shopify(moto_stack, "orders/create", order(), "wh-o1")
    late = shopify(moto_stack, "checkouts/update", checkout(completed_at="2026-11-02T10:30:00-05:00"), "wh-k1")
    weeks_pass(moto_stack, days=4)

    assert late.status == 200 and "completed" in late.json()["ignored"]
    assert cart_reminders(moto_stack) == []


def test_2b_buying_through_a_new_checkout_ends_the_first_checkouts_reminders(moto_stack: MotoStack) -> None:
    shopify(moto_stack, "checkouts/create", checkout(), "wh-k1")
    # The buyer comes back later and buys through a fresh checkout
    placed = shopify(moto_stack, "orders/create", order(checkout_id=CHECKOUT_ID + 1), "wh-o1")
    weeks_pass(moto_stack, days=4)

    assert placed.json()["exited"] == ["abandoned_cart"]
    assert cart_reminders(moto_stack) == []


def test_2c_a_phone_first_checkout_and_its_email_order_send_no_sms_reminder(moto_stack: MotoStack) -> None:
    phone_first = checkout(email=None, phone="+16135550188", sms_marketing_phone="+16135550188")
    phone_first["customer"] = None
    started = shopify(moto_stack, "checkouts/create", phone_first, "wh-k1")
    shopify(moto_stack, "orders/create", order(phone="+16135550188"), "wh-o1")
    weeks_pass(moto_stack, days=4)

    by_phone = contact_id_for(external_id=None, email=None, phone="+16135550188")
    assert started.json()["started"] == ["abandoned_cart"] and started.json()["contact_id"] == by_phone
    assert runs(moto_stack, by_phone, "abandoned_cart") == [(RunStatus.EXITED, "exit:checkout_closed")]
    assert moto_stack.sent_sms() == {}


def test_2d_a_corrected_email_moves_the_reminders_and_the_live_link(moto_stack: MotoStack) -> None:
    typo = checkout(email="erin@exmaple.com")
    typo["customer"] = typo["customer"] | {"email": "erin@exmaple.com"}
    shopify(moto_stack, "checkouts/create", typo, "wh-k1")
    live = "https://dev-shop.myshopify.com/548380009/checkouts/c1a0d2b3/recover?key=live"
    corrected = shopify(moto_stack, "checkouts/update", checkout(abandoned_checkout_url=live), "wh-k2")
    weeks_pass(moto_stack, days=4)

    mistyped = contact_id_for(external_id=None, email="erin@exmaple.com", phone=None)
    assert (corrected.json()["type"], corrected.json()["started"]) == ("checkout_started", ["abandoned_cart"])
    assert runs(moto_stack, mistyped, "abandoned_cart") == [(RunStatus.EXITED, "exit:checkout_closed")]
    assert subjects(moto_stack, "erin@exmaple.com") == []
    assert len([s for s in subjects(moto_stack, "erin@example.com") if any(r in s for r in CART_REMINDERS)]) == 3
    assert all("key=live" in body.replace("=\n", "") for body in bodies(moto_stack, "You left something"))


# 3. The currency the buyer paid in ---------------------------------------------------------------------------


def test_3_a_markets_order_shows_the_buyers_currency_and_amounts(moto_stack: MotoStack) -> None:
    # A CAD shop selling in EUR: top-level amounts are the shop's CAD, *_set.presentment_money the buyer's EUR
    def money(cad: str, eur: str) -> dict[str, Any]:
        return {
            "shop_money": {"amount": cad, "currency_code": "CAD"},
            "presentment_money": {"amount": eur, "currency_code": "EUR"},
        }

    markets = order(currency="CAD", presentment_currency="EUR", total_price="96.46", subtotal_price="96.46")
    markets |= {"total_price_set": money("96.46", "65.21"), "subtotal_price_set": money("96.46", "65.21")}
    markets["line_items"] = [
        item | {"price": "48.23", "price_set": money("48.23", "32.61")} for item in markets["line_items"]
    ]
    placed = shopify(moto_stack, "orders/create", markets, "wh-o1")

    [thank_you] = bodies(moto_stack, "Thank you for your order")
    text = thank_you.replace("=\n", "")
    assert placed.status == 202
    assert "65.21" in text and "96.46" not in text and "48.23" not in text
    contact = moto_stack.container.store.get_contact(ERIN)
    assert contact is not None and str(contact.aggregates.total_spent) == "65.21"


# 4. WooCommerce orders that skip processing, and partial refunds --------------------------------------------


def test_4_a_woocommerce_order_going_pending_to_completed_is_counted(moto_stack: MotoStack) -> None:
    pending = woo(moto_stack, "order.created", fixture("woocommerce/order.json") | {"status": "pending"}, "d-1")
    completed = woo(moto_stack, "order.updated", fixture("woocommerce/order.json") | {"status": "completed"}, "d-2")

    frank = completed.json()["contact_id"]
    assert pending.status == 200
    assert [part["type"] for part in completed.json()["parts"]] == ["order_placed", "order_fulfilled"]
    assert completed.json()["started"] == ["post_purchase", "sunset", "win_back"]
    contact = moto_stack.container.store.get_contact(frank)
    assert contact is not None and (contact.aggregates.orders_count, str(contact.aggregates.total_spent)) == (
        1,
        "35.35",
    )
    assert subjects(moto_stack) == ["Thank you for your order #727"]


def test_4_a_woocommerce_partial_refund_counts_once_and_keeps_the_review_request(moto_stack: MotoStack) -> None:
    order_json = fixture("woocommerce/order.json")
    woo(moto_stack, "order.created", order_json, "d-1")
    refunded = order_json | {"refunds": [{"id": 730, "reason": "Chipped", "total": "-9.00"}]}
    first = woo(moto_stack, "order.updated", refunded, "d-2")
    again = woo(moto_stack, "order.updated", refunded | {"customer_note": "thanks"}, "d-3")
    weeks_pass(moto_stack)

    assert first.json()["type"] == "refund_created" and again.json()["ignored"] == "already seen"
    contact = moto_stack.container.store.get_contact(first.json()["contact_id"])
    assert contact is not None and str(contact.aggregates.total_spent) == "26.35"
    # The review request stays due (Frank gave WooCommerce no marketing consent, so it is skipped, not exited)
    assert runs(moto_stack, first.json()["contact_id"], "post_purchase") == [(RunStatus.COMPLETED, None)]


# 5. Privacy: redaction through orders, deleted customers ------------------------------------------------------


def test_5_a_redaction_with_a_local_phone_finds_the_customer_through_their_orders(moto_stack: MotoStack) -> None:
    shopify(moto_stack, "orders/create", order(), "wh-o1")
    # Shopify's own example: a phone that is not E.164, an email nudge does not hold, the orders to redact
    redact = {
        "shop_id": 954889,
        "shop_domain": "dev-shop.myshopify.com",
        "customer": {"id": 207119551, "email": "john@example.com", "phone": "555-625-1199"},
        "orders_to_redact": [299938, ORDER_ID, 220458],
    }
    erased = shopify(moto_stack, "customers/redact", redact, "wh-r1")
    nothing = shopify(moto_stack, "customers/redact", redact | {"orders_to_redact": [1]}, "wh-r2")

    assert erased.json()["erased"] == 1
    assert moto_stack.container.store.get_contact(ERIN) is None
    requests = moto_stack.container.privacy_requests  # type: ignore[attr-defined]
    assert (requests.get("shopify:wh-r1").status, requests.get("shopify:wh-r2").status) == ("erased", "nothing_found")
    assert nothing.json()["erased"] == 0


def test_5_a_deleted_customer_gets_no_review_request(moto_stack: MotoStack) -> None:
    shopify(moto_stack, "orders/create", order(), "wh-o1")
    deleted = shopify(moto_stack, "customers/delete", {"id": CUSTOMER_ID, "phone": None, "addresses": []}, "wh-d1")
    weeks_pass(moto_stack)

    assert sorted(deleted.json()["exited"]) == ["post_purchase", "sunset", "win_back"]
    assert subjects(moto_stack) == ["Thank you for your order #1001"]


UNINSTALLED = "corpus/shopify/docs_app_uninstalled.json"  # Shopify's own sample (SOURCES.md)


def buyer(n: int) -> dict[str, Any]:
    """Another customer's order: their own address, id and checkout."""
    who = f"buyer{n}@example.com"
    customer = fixture("shopify/orders_create.json")["customer"] | {"id": CUSTOMER_ID + n, "email": who}
    return order(id=ORDER_ID + n, name=f"#{1001 + n}", email=who, checkout_id=None, customer=customer)


def test_5_an_uninstall_ends_what_only_the_shops_events_could_end_and_a_forgery_nothing(
    moto_stack: MotoStack,
) -> None:
    # Given an open cart (Cat), an order with its review request ahead (Erin), and a signup nudge had
    # from its own form, not from the shop (Fay, welcome series)
    cats = checkout()["customer"] | {"id": CUSTOMER_ID + 9, "email": "cat@example.com"}
    shopify(
        moto_stack, "checkouts/create", checkout(id=CHECKOUT_ID + 1, email="cat@example.com", customer=cats), "wh-c1"
    )
    shopify(moto_stack, "orders/create", order(checkout_id=None), "wh-o1")
    moto_stack.call_api("POST", "/v1/events", subscribed("evt_fay", contact("fay")))
    moto_stack.settle()
    cat, fay = (contact_id_for(external_id=None, email=f"{w}@example.com", phone=None) for w in ("cat", "fay"))
    before = everything_stored(moto_stack)

    # When a forged uninstall arrives, then the real one (Shopify's own payload), and Shopify redelivers it
    forged = shopify(moto_stack, "app/uninstalled", fixture(UNINSTALLED), "wh-u0", tamper=FORGERIES["wrong signature"])
    assert (forged.status, everything_stored(moto_stack)) == (401, before)
    assert moto_stack.container.disconnect.status(f"shopify:{DEV_SHOPIFY_SHOP}") is None
    assert ("active", None) in [(s.value, r) for s, r in runs(moto_stack, cat, "abandoned_cart")]
    uninstalled = shopify(moto_stack, "app/uninstalled", fixture(UNINSTALLED), "wh-u1")
    again = shopify(moto_stack, "app/uninstalled", fixture(UNINSTALLED), "wh-u1")
    # (the request records it and queues the first piece for the sweep function; it ends nothing itself)
    assert (uninstalled.json()["queued"], "exited" in uninstalled.json()) == (True, False)
    weeks_pass(moto_stack)

    # Then it is recorded as disconnected; the runs only the shop's events could end are ended ...
    assert (uninstalled.status, uninstalled.json()["status"], again.status) == (202, "disconnected", 202)
    status = moto_stack.container.disconnect.status(f"shopify:{DEV_SHOPIFY_SHOP}")
    assert status is not None and (status["status"], status["event_id"]) == ("disconnected", "shopify:wh-u1")
    assert runs(moto_stack, cat, "abandoned_cart") == [(RunStatus.EXITED, "shop_uninstalled")]
    ended = {
        flow: reason for flow in ("post_purchase", "win_back", "sunset") for _, reason in runs(moto_stack, ERIN, flow)
    }
    assert ended == dict.fromkeys(("post_purchase", "win_back", "sunset"), "shop_uninstalled")
    # ... so no cart reminder and no review request follow; a contact the shop never named is left alone
    assert cart_reminders(moto_stack) == []
    assert [s for s in subjects(moto_stack, "erin@example.com") if "review" in s.lower()] == []
    assert subjects(moto_stack, "erin@example.com")[0] == "Thank you for your order #1001"  # sent before
    assert all(reason != "shop_uninstalled" for _, reason in runs(moto_stack, fay, "welcome"))
    assert len([s for s in subjects(moto_stack, "fay@example.com") if s]) > 1  # her welcome series went on


def test_5_an_uninstall_walks_many_contacts_in_resumable_pieces(moto_stack: MotoStack, monkeypatch: Any) -> None:
    # Given five buyers of the shop, each with a review request ahead, and index pages of two refs
    for n in range(1, 6):
        shopify(moto_stack, "orders/create", buyer(n), f"wh-o{n}")
    moto_stack.settle()
    monkeypatch.setattr(disconnect, "PAGE", 2)
    piece = disconnect.DisconnectPiece(f"shopify:{DEV_SHOPIFY_SHOP}", "shop_uninstalled", "shopify:wh-u1")

    # When a piece runs out of time after its first page, and its continuation goes through the jobs queue
    first = moto_stack.container.disconnect.work(piece, moto_stack.clock.now())
    [follow] = first.follow
    moto_stack.container.jobs.put([json.loads(json.dumps(follow.as_payload()))])  # type: ignore[union-attr]
    moto_stack.settle()

    # Then the first page ended some, the continuation the rest, and every buyer's review request is ended once
    assert 1 <= first.contacts <= 2 and follow.part == 1 and follow.cursor is not None
    buyers = [contact_id_for(external_id=None, email=f"buyer{n}@example.com", phone=None) for n in range(1, 6)]
    assert [runs(moto_stack, b, "post_purchase") for b in buyers] == [[(RunStatus.EXITED, "shop_uninstalled")]] * 5
    assert disconnect.DisconnectPiece.parse(follow.as_payload()) == follow


# 6. Money: refunds counted once, only when they moved money, and only a full one undoes the sale ----------------


def test_6_refunds_count_what_moved_once_and_a_partial_one_keeps_the_review(moto_stack: MotoStack) -> None:
    shopify(moto_stack, "orders/create", order(), "wh-o1")
    second = order(id=ORDER_ID + 1, name="#1002", checkout_id=None, total_price="50.00")
    shopify(moto_stack, "orders/create", second, "wh-o2")
    # A failed refund transaction refunds nothing; a partial refund of the first order takes 37.80
    refund = fixture("shopify/refunds_create.json")
    failed = copy.deepcopy(refund) | {"id": 1}
    failed["transactions"][0]["status"] = "failure"
    shopify(moto_stack, "refunds/create", failed, "wh-f1")
    shopify(moto_stack, "refunds/create", refund, "wh-f2")
    # The second order is cancelled with a refund: Shopify sends the cancellation and the refund
    cancelled = second | {"cancelled_at": "2026-11-02T11:00:00-05:00", "financial_status": "refunded"}
    shopify(moto_stack, "orders/cancelled", cancelled, "wh-x1")
    cancel_refund = copy.deepcopy(refund) | {"id": 2, "order_id": ORDER_ID + 1}
    cancel_refund["transactions"][0]["amount"] = "50.00"
    shopify(moto_stack, "refunds/create", cancel_refund, "wh-f3")
    weeks_pass(moto_stack)

    contact = moto_stack.container.store.get_contact(ERIN)
    assert contact is not None
    assert (contact.aggregates.orders_count, str(contact.aggregates.total_spent)) == (1, "37.80")
    # The first order's review request still goes out: only part of it came back
    assert [s for s in subjects(moto_stack) if s.startswith("How are you liking it")] == [
        "How are you liking it, Erin?"
    ]


# 7. Consent and content -------------------------------------------------------------------------------------


def test_7_sms_consent_and_the_updated_cart_at_checkout(moto_stack: MotoStack) -> None:
    consenting = checkout(phone="+16135550188", sms_marketing_phone="+16135550188")
    shopify(moto_stack, "checkouts/create", consenting, "wh-k1")
    added = copy.deepcopy(consenting)
    added["line_items"].append(added["line_items"][0] | {"title": "Linen napkins", "variant_id": 1, "price": "9.00"})
    shopify(moto_stack, "checkouts/update", added, "wh-k2")
    moto_stack.pump.run_until(START + timedelta(days=2))

    contact = moto_stack.container.store.get_contact(ERIN)
    assert contact is not None and (contact.phone, contact.sms_marketing) == ("+16135550188", True)
    [reminder] = bodies(moto_stack, "You left something")
    assert "Linen napkins" in reminder
    [(phone, _)] = moto_stack.sent_sms().values()
    assert phone == "+16135550188"


def test_7_guest_orders_keep_the_name_try_the_billing_phone_and_test_orders_count_nothing(
    moto_stack: MotoStack,
) -> None:
    guest = order(customer=None, email=None, contact_email=None, phone="12")  # Shopify keeps whatever the buyer typed
    guest["billing_address"] = guest["billing_address"] | {"phone": "613-555-0177", "country_code": "CA"}
    placed = shopify(moto_stack, "orders/create", guest, "wh-o1")
    test = shopify(moto_stack, "orders/create", order(id=ORDER_ID + 5, test=True), "wh-o2")

    by_phone = contact_id_for(external_id=None, email=None, phone="+16135550177")
    assert (placed.status, placed.json()["contact_id"]) == (202, by_phone)
    contact = moto_stack.container.store.get_contact(by_phone)
    assert contact is not None and (contact.first_name, contact.last_name) == ("Erin", "Ebbs")
    assert test.status == 200 and "test order" in test.json()["ignored"]
    assert moto_stack.container.store.get_contact(ERIN) is None
    assert moto_stack.sent_emails() == []  # a phone-only guest gets no email; the test order no thanks


# 8. Concurrency ---------------------------------------------------------------------------------------------


def test_8_orders_create_and_orders_paid_at_once_record_the_order_once(moto_stack: MotoStack) -> None:
    ingest = moto_stack.container.webhooks._ingest  # type: ignore[attr-defined]
    real = ingest.ingest
    seen: list[Any] = []

    def interleaved(event: Any) -> Any:
        if event.event_id == "shopify:wh-o1" and not seen:  # orders/paid arrives while orders/create is processed
            seen.append(None)
            seen[0] = shopify(moto_stack, "orders/paid", order(), "wh-o2")
        return real(event)

    ingest.ingest = interleaved
    try:
        created = shopify(moto_stack, "orders/create", order(), "wh-o1")
    finally:
        ingest.ingest = real

    assert created.json()["type"] == "order_placed"
    assert seen[0].json()["ignored"] == "already seen"
    placed = [e for e in moto_stack.container.store.events_for(ERIN) if e.get("type") == "order_placed"]
    assert len(placed) == 1


# 9. Back in stock (and price drops) from the catalog ----------------------------------------------------------


def notify_me(stack: MotoStack, who: str, variant: str, time: int = 1) -> None:
    plain, _ = stack.container.keys.create(KeyKind.SECRET, "tests")
    call = {
        "type": "track",
        "messageId": f"notify-{who}-{time}",
        "userId": f"u_{who}",
        "event": "Back In Stock Requested",
        "context": {"traits": {"email": f"{who}@example.com", "firstName": who.title(), "email_marketing": True}},
        "properties": {"variant_id": variant, "product_id": "632910392"},
    }
    auth = base64.b64encode(f"{plain}:".encode()).decode()
    response = stack.send(
        "POST",
        "/v1/track",
        json.dumps(call).encode(),
        {"Content-Type": "application/json", "Authorization": f"Basic {auth}"},
    )
    assert response.status == 202


def product(quantity: int, price: str = "199.00") -> dict[str, Any]:
    variant = {"id": 808950810, "product_id": 632910392, "title": "Pink", "price": price}
    variant |= {"inventory_item_id": 808950810, "inventory_quantity": quantity}
    return {"id": 632910392, "title": "IPod Nano - 8GB", "handle": "ipod-nano", "variants": [variant]}


def test_9_a_restock_tells_each_waiting_contact_once_and_a_price_drop_is_an_event(moto_stack: MotoStack) -> None:
    # Given the install's first look at the product (out of stock) and two shoppers waiting on the variant
    first = shopify(moto_stack, "products/update", product(0), "wh-p1")
    notify_me(moto_stack, "hal", "808950810")
    notify_me(moto_stack, "ivy", "808950810")
    # When it comes back (products/update), sells out and comes back again at one location (inventory level)
    back = shopify(moto_stack, "products/update", product(5), "wh-p2")
    again = shopify(moto_stack, "products/update", product(5), "wh-p3")  # a redelivery of the same state
    level = {"inventory_item_id": 808950810, "location_id": 905684977, "available": 0}
    shopify(moto_stack, "inventory_levels/update", level, "wh-l1")
    notify_me(moto_stack, "hal", "808950810", time=2)  # Hal asks again
    restocked = shopify(moto_stack, "inventory_levels/update", level | {"available": 3}, "wh-l2")
    notify_me(moto_stack, "kim", "808950810")  # Kim waits for a better price
    cheaper = shopify(moto_stack, "products/update", product(5, "149.00"), "wh-p4")
    moto_stack.pump.run_until(START + timedelta(days=3))

    # Then the first look announces nothing; each restock tells whoever waited, once
    assert (first.json()["back_in_stock"], back.json()["back_in_stock"], again.json()["back_in_stock"]) == (0, 2, 0)
    assert (restocked.json()["back_in_stock"], cheaper.json()["price_dropped"]) == (1, 1)
    # (Hal's second notice finds his first run still active: one run per flow at a time)
    assert [len(runs(moto_stack, who, "back_in_stock")) for who in ("u_hal", "u_ivy", "u_kim")] == [1, 1, 0]
    assert subjects(moto_stack, "ivy@example.com")[0] == "IPod Nano - 8GB - Pink is back"
    kim = [e["type"] for e in moto_stack.container.store.events_for("u_kim")]
    assert "price_dropped" in kim and "back_in_stock" not in kim


def test_9_a_restock_notice_piece_that_fails_half_way_is_retried_and_tells_the_rest_nobody_twice(
    moto_stack: MotoStack,
) -> None:
    # Given a product out of stock and two shoppers waiting on it
    shopify(moto_stack, "products/update", product(0), "wh-p1")
    notify_me(moto_stack, "hal", "808950810")
    notify_me(moto_stack, "ivy", "808950810")
    ingest = moto_stack.container.webhooks._ingest  # type: ignore[attr-defined]
    real = ingest.ingest
    failed: list[str] = []

    def throttled_once(event: Any) -> Any:
        if event.type == "back_in_stock" and event.contact_id == "u_ivy" and not failed:
            failed.append(event.event_id)  # DynamoDB throttled the second notice, after Hal's went through
            raise RuntimeError("ProvisionedThroughputExceededException")
        return real(event)

    # When the restock's notices, on the jobs queue, fail after telling Hal, and SQS delivers the piece again
    ingest.ingest = throttled_once
    try:
        restock = shopify(moto_stack, "products/update", product(5), "wh-p2")
        moto_stack.pump.run_until(START + timedelta(days=1))
    finally:
        ingest.ingest = real
    later = shopify(moto_stack, "products/update", product(4), "wh-p3")
    moto_stack.pump.run_until(START + timedelta(days=3))

    # Then the webhook answered at once, the retried piece told Ivy and not Hal twice (the notice's id names
    # the change and the contact), and nothing more came of the next update
    assert (restock.status, restock.json()["back_in_stock"], later.json()["back_in_stock"]) == (202, 2, 0)
    assert failed
    assert [len(runs(moto_stack, who, "back_in_stock")) for who in ("u_hal", "u_ivy")] == [1, 1]
    notices = [[s for s in subjects(moto_stack, f"{who}@example.com") if "is back" in s] for who in ("hal", "ivy")]
    assert notices == [["IPod Nano - 8GB - Pink is back"]] * 2


def test_9_a_restock_whose_queueing_response_is_lost_is_redelivered_and_tells_each_once(
    moto_stack: MotoStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a product out of stock and a shopper waiting on it
    shopify(moto_stack, "products/update", product(0), "wh-p1")
    notify_me(moto_stack, "hal", "808950810")
    jobs = moto_stack.container.jobs
    assert jobs is not None
    put = jobs.put
    lost: list[int] = []

    def queued_but_the_answer_is_lost(bodies: Any, **kwargs: Any) -> None:
        put(bodies, **kwargs)
        if not lost:
            lost.append(len(bodies))  # SQS queued the notice; its answer timed out
            raise RuntimeError("Read timeout on endpoint URL")

    # When the delivery fails after its notice was queued, and Shopify delivers it again
    monkeypatch.setattr(jobs, "put", queued_but_the_answer_is_lost)
    first = shopify(moto_stack, "products/update", product(5), "wh-p2")
    again = shopify(moto_stack, "products/update", product(5), "wh-p2")
    moto_stack.pump.run_until(START + timedelta(days=3))

    # Then the failed delivery stored no new level and kept the waitlist, so the redelivery queued the same
    # notice again; the two pieces tell Hal once (the notice's id names the change and the contact)
    assert lost == [1] and first.status >= 500 and (again.status, again.json()["back_in_stock"]) == (202, 1)
    assert len(runs(moto_stack, "u_hal", "back_in_stock")) == 1
    assert [s for s in subjects(moto_stack, "hal@example.com") if "is back" in s] == ["IPod Nano - 8GB - Pink is back"]


def test_9_a_woocommerce_product_back_in_stock_tells_the_waiting_contact(moto_stack: MotoStack) -> None:
    mug = {"id": 93, "name": "Ceramic mug", "permalink": "https://woo.example/p/mug", "price": "9.00"}
    woo(moto_stack, "product.updated", mug | {"manage_stock": True, "stock_quantity": 0}, "d-p1")
    notify_me(moto_stack, "jo", "93")
    back = woo(moto_stack, "product.updated", mug | {"manage_stock": False, "stock_status": "instock"}, "d-p2")
    moto_stack.settle()

    assert back.json()["back_in_stock"] == 1
    assert subjects(moto_stack, "jo@example.com") == ["Ceramic mug is back"]


def form_notify_me(stack: MotoStack, key: str, who: str, variant: str) -> None:
    """The signup form's "notify me" (a product page's form with the variant), as a browser sends it."""
    form = json.dumps({"email": f"{who}@example.com", "first_name": "Mallory", "notify_me": variant}).encode()
    headers = {"Content-Type": "application/json", "Origin": SHOP}
    assert stack.send("POST", "/v1/subscribe", form, headers, {"key": key}).status == 202


def confirm_last_link(stack: MotoStack) -> None:
    found = re.search(r"/v1/subscribe/confirm\?token=([A-Za-z0-9_.-]+)", plain_text(stack.sent_emails()[-1].raw_data))
    assert found is not None
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert stack.send("POST", "/v1/subscribe/confirm", f"token={found.group(1)}".encode(), form).status == 200


def test_9_notify_me_through_the_signup_form_waits_only_once_the_address_owner_confirms(
    moto_stack: MotoStack,
) -> None:
    # Given a known customer (no marketing consent yet), a product out of stock, and the shop's signup form
    moto_stack.call_api("POST", "/v1/contacts", {"email": "lea@example.com", "first_name": "Lea"})
    lea = contact_id_for(external_id=None, email="lea@example.com", phone=None)
    before = moto_stack.container.store.get_contact(lea)
    shopify(moto_stack, "products/update", product(0), "wh-p1")
    key, _ = moto_stack.container.keys.create(KeyKind.PUBLISHABLE, "product page", origins=[SHOP])

    # When a stranger asks to be told about the variant with her address, twice the same day
    form_notify_me(moto_stack, key, "lea", "808950810")
    form_notify_me(moto_stack, key, "lea", "808950810")
    # Then nothing of hers changes and she waits on nothing: a restock now tells nobody
    after = moto_stack.container.store.get_contact(lea)
    assert before is not None and after is not None
    fields = ("first_name", "phone", "email_marketing", "sms_marketing", "properties")
    assert [getattr(after, f) for f in fields] == [getattr(before, f) for f in fields] == ["Lea", None, None, None, {}]
    assert moto_stack.container.refs.waiting("808950810") == []
    early = shopify(moto_stack, "products/update", product(5), "wh-p2")
    assert early.json()["back_in_stock"] == 0
    # and one confirmation email went out, with no form text in it
    [confirmation] = moto_stack.sent_emails()
    assert "Subject: Please confirm your subscription" in confirmation.raw_data
    assert "Mallory" not in plain_text(confirmation.raw_data)

    # When she confirms, and the variant sells out and comes back
    confirm_last_link(moto_stack)
    shopify(moto_stack, "products/update", product(0), "wh-p3")
    back = shopify(moto_stack, "products/update", product(4), "wh-p4")
    again = shopify(moto_stack, "products/update", product(4), "wh-p4")  # Shopify's redelivery of it
    moto_stack.pump.run_until(START + timedelta(days=3))
    # Then exactly one notification (the flow's notice; its reminder a day later), her name is not the stranger's
    assert (back.json()["back_in_stock"], again.json().get("back_in_stock", 0)) == (1, 0)
    assert subjects(moto_stack, "lea@example.com").count("IPod Nano - 8GB - Pink is back") == 1
    assert moto_stack.container.store.get_contact(lea).first_name == "Lea"  # type: ignore[union-attr]

    # When it sells out and comes back again without her asking again: nothing; she asks again (and confirms)
    shopify(moto_stack, "products/update", product(0), "wh-p5")
    unasked = shopify(moto_stack, "products/update", product(2), "wh-p6")
    moto_stack.pump.run_until(START + timedelta(days=6))
    form_notify_me(moto_stack, key, "lea", "808950810")
    confirm_last_link(moto_stack)
    shopify(moto_stack, "products/update", product(0), "wh-p7")
    second = shopify(moto_stack, "products/update", product(7), "wh-p8")
    moto_stack.pump.run_until(START + timedelta(days=9))
    # Then the second restock she asked about tells her once more
    assert (unasked.json()["back_in_stock"], second.json()["back_in_stock"]) == (0, 1)
    assert subjects(moto_stack, "lea@example.com").count("IPod Nano - 8GB - Pink is back") == 2


# 10. One phone normalization ----------------------------------------------------------------------------------


def test_10_a_stop_from_the_number_a_webhook_stored_reaches_its_suppression(moto_stack: MotoStack) -> None:
    texter = fixture("shopify/customers_create.json") | {
        "email": None,
        "phone": "+44 (0)20 7946 0958",
        "email_marketing_consent": None,
        "sms_marketing_consent": {"state": "subscribed", "consent_updated_at": "2026-11-02T08:58:12-05:00"},
    }
    stored = shopify(moto_stack, "customers/create", texter, "wh-c1")
    sms_inbound.handler(inbound_sms("STOP", "+442079460958"), FakeLambdaContext.fresh("nudge-sms-inbound"))

    assert stored.json()["contact_id"] == contact_id_for(external_id=None, email=None, phone="+442079460958")
    contact = moto_stack.container.store.get_contact(stored.json()["contact_id"])
    assert contact is not None and contact.phone == "+442079460958"
    assert moto_stack.container.store.address_state(address_key(Channel.SMS, contact.phone)) is not None

"""API keys, storefront signatures and signed links, in memory: the checks every public route leans on."""

from __future__ import annotations

from datetime import timedelta

import pytest

from nudge import signing
from nudge.adapters.memory import MemoryApiKeys
from nudge.clocks import VirtualClock
from nudge.integrations.segment_api import event_type_for
from nudge.ports import KeyKind
from nudge.services.keys import KeyService, hash_key


def test_a_key_is_stored_only_as_its_hash_and_only_works_for_its_kind(clock: VirtualClock) -> None:
    stored = MemoryApiKeys()
    keys = KeyService(stored, clock)

    plain, record = keys.create(KeyKind.SECRET, "backend")

    assert list(stored.keys) == [hash_key(plain)] == [record.key_hash]
    assert plain not in repr(stored.keys)
    assert keys.authenticate(plain, KeyKind.SECRET) == record
    assert keys.authenticate(plain, KeyKind.PUBLISHABLE) is None
    assert keys.authenticate(plain[:-1], KeyKind.SECRET) is None
    assert keys.authenticate(None, KeyKind.SECRET) is None


def test_a_revoked_key_stops_working_by_key_or_by_id(clock: VirtualClock) -> None:
    keys = KeyService(MemoryApiKeys(), clock)
    first, _ = keys.create(KeyKind.SECRET, "a")
    second, record = keys.create(KeyKind.PUBLISHABLE, "b", origins=["https://shop.example/"])

    assert keys.revoke(first) and keys.revoke(record.key_hash.upper())
    assert keys.authenticate(first, KeyKind.SECRET) is None
    assert keys.authenticate(second, KeyKind.PUBLISHABLE) is None
    assert record.origins == ("https://shop.example",)
    assert not keys.revoke("nudge_sk_never-made")


def test_a_storefront_signature_is_checked_over_the_exact_bytes() -> None:
    body = b'{"id": 1}'
    header = signing.base64_hmac("s3cret", body)

    signing.verify_base64_hmac("s3cret", header, body)
    for secret, sent, given in [("other", header, body), ("s3cret", header, body + b" "), ("s3cret", None, body)]:
        with pytest.raises(signing.SignatureError):
            signing.verify_base64_hmac(secret, sent, given)


def test_a_signed_link_holds_until_it_expires_and_cannot_be_altered(clock: VirtualClock) -> None:
    token = signing.sign_token("key", {"e": "a@example.com", "exp": int((clock.now() + timedelta(days=7)).timestamp())})

    assert signing.verify_token("key", token, clock.now())["e"] == "a@example.com"
    payload, _, digest = token.partition(".")
    forged = signing.sign_token("key", {"e": "b@example.com", "exp": 2**40}).partition(".")[0] + "." + digest
    for bad in [forged, token + "x", "", None]:
        with pytest.raises(signing.SignatureError):
            signing.verify_token("key", bad, clock.now())
    with pytest.raises(signing.SignatureError, match="expired"):
        signing.verify_token("key", token, clock.now() + timedelta(days=8))


@pytest.mark.parametrize(
    ("name", "event_type"),
    [
        ("Order Completed", "order_placed"),
        ("Checkout Started", "checkout_started"),
        ("Product Viewed", "product_viewed"),
        ("signed_up", "signed_up"),
    ],
)
def test_segment_event_names_become_flow_event_types(name: str, event_type: str) -> None:
    assert event_type_for(name) == event_type


def test_an_event_name_without_letters_is_refused() -> None:
    with pytest.raises(ValueError, match="letter first"):
        event_type_for("!!! 42")

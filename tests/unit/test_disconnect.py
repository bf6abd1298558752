"""app/uninstalled: what the delivery maps to, which flows its disconnect ends, and its jobs-queue pieces."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from nudge.flow_files import load_catalog
from nudge.integrations import shopify
from nudge.integrations.canonical import Disconnect, Ignored
from nudge.services.disconnect import BadDisconnectPiece, DisconnectPiece, waits_on_storefront
from tests.conftest import ROOT
from tests.unit.test_storefront_mapping import fixture

NOW = datetime(2026, 11, 2, 15, tzinfo=UTC)


def test_the_recorded_uninstall_disconnects_the_shop_the_verified_header_names() -> None:
    payload = fixture("corpus/shopify/docs_app_uninstalled.json")  # its myshopify_domain is null

    mapped = shopify.map_webhook("app/uninstalled", "wh-1", "a.myshopify.com", payload, NOW)
    nameless = shopify.map_webhook("app/uninstalled", "wh-1", "", payload, NOW)

    assert mapped == Disconnect("shopify:wh-1", "shopify:a.myshopify.com", "shop_uninstalled")
    assert isinstance(nameless, Ignored)


def test_flows_that_end_or_convert_on_storefront_events_are_the_ones_a_disconnect_ends() -> None:
    library = {flow.id: waits_on_storefront(flow) for flow in load_catalog(ROOT / "flows")}

    ended = {"abandoned_cart", "back_in_stock", "post_purchase", "welcome", "win_back", "sunset", "replenishment"}
    assert ended <= {flow for flow, waits in library.items() if waits}
    assert not library["birthday"] and not library["double_opt_in"] and not library["vip_loyalty"]


@pytest.mark.parametrize(
    "body",
    [
        {"job": "daily"},
        {"job": "disconnect", "scope": "elsewhere:x", "reason": "shop_uninstalled", "event": "e"},
        {"job": "disconnect", "scope": "shopify:a:b", "reason": "shop_uninstalled", "event": "e"},
        {"job": "disconnect", "scope": "shopify:a", "reason": "bored", "event": "e"},
        {"job": "disconnect", "scope": "shopify:a", "reason": "shop_uninstalled", "event": ""},
        {"job": "disconnect", "scope": "shopify:a", "reason": "shop_uninstalled", "event": "e", "part": -1},
        {"job": "disconnect", "scope": "shopify:a", "reason": "shop_uninstalled", "event": "e", "cursor": "x"},
    ],
)
def test_a_record_that_is_no_disconnect_piece_is_refused(body: dict[str, Any]) -> None:
    with pytest.raises(BadDisconnectPiece):
        DisconnectPiece.parse(body)


def test_a_piece_and_its_continuation_survive_the_queue() -> None:
    piece = DisconnectPiece("shopify:a.myshopify.com", "shop_uninstalled", "shopify:wh-1")
    follow = piece.then({"ref": "shopify:a.myshopify.com:order:1", "scope": "shopify:a.myshopify.com"})

    assert DisconnectPiece.parse(piece.as_payload()) == piece
    assert DisconnectPiece.parse(follow.as_payload()) == follow and follow.part == 1

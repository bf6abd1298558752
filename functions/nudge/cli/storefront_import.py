"""`nudge import storefront`: what a shop already has, as its platform's REST API lists it, imported once.

A first sync reads the Admin API's lists (Shopify: `customers`, `checkouts` (abandoned), `orders`,
`products`; WooCommerce: `customers`, `orders`, `products`) and hands each record to the same mapper a
webhook about it would reach, then to `WebhookService.backfill`: contacts, consent, aggregates, open
checkouts and stock are recorded and their refs claimed, and no flow starts (ADR 0017). Event ids name
the record and its last update, so importing the same lists again imports nothing new.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

from nudge.integrations import shopify, woocommerce
from nudge.integrations.canonical import Canonical, mapping, text_or_none
from nudge.services.storefront_webhooks import WebhookService

# The webhook topic each list's records stand for (the mapper's view of "this is how it is now").
TOPICS = {
    "shopify": {
        "customers": "customers/update",
        "checkouts": "checkouts/update",
        "orders": "orders/create",
        "products": "products/update",
    },
    "woocommerce": {
        "customers": "customer.updated",
        "orders": "order.updated",
        "products": "product.updated",
    },
}


class ImportFormatError(ValueError):
    """The document is not a JSON object holding any of the lists the platform's import reads."""


def records(platform: str, document: Any) -> list[tuple[str, dict[str, Any]]]:
    """(list name, record) pairs, in the order that keeps history right: products, customers, orders, checkouts."""
    body = mapping(document)
    order = ("products", "customers", "orders", "checkouts")
    found = []
    for name in order:
        if name not in TOPICS[platform]:
            continue
        listed = body.get(name)
        single = body.get(name.removesuffix("s"))
        values = listed if isinstance(listed, list) else [single] if isinstance(single, dict) else []
        found += [(name, item) for item in values if isinstance(item, dict)]
    if not found:
        raise ImportFormatError(f"no {', '.join(TOPICS[platform])} list in the document")
    return found


def canonical_for(platform: str, site: str, name: str, record: dict[str, Any], now: datetime) -> Canonical:
    """What the record would mean as a webhook; its event id names the record and its last update."""
    stamp = text_or_none(record.get("updated_at") or record.get("date_modified_gmt")) or "-"
    delivery = f"import-{name}-{text_or_none(record.get('id')) or '-'}-{stamp}"
    topic = TOPICS[platform][name]
    if platform == "shopify":
        return shopify.map_webhook(topic, delivery, site, record, now)
    return woocommerce.map_webhook(topic, f"woocommerce:{delivery}", site, record, now)


def backfill_storefront(
    webhooks: WebhookService,
    platform: str,
    site: str,
    document: Any,
    now: datetime,
    progress: Callable[[int], object] = lambda done: None,
) -> Counter[str]:
    """Import every record; counts by list and by outcome (imported, already seen, ignored)."""
    counts: Counter[str] = Counter()
    for done, (name, record) in enumerate(records(platform, document), start=1):
        outcome = webhooks.backfill(canonical_for(platform, site, name, record, now))
        counts[name] += 1
        if outcome.get("duplicate") or outcome.get("ignored") == "already seen":
            counts["already seen"] += 1
        elif "ignored" in outcome:
            counts["ignored"] += 1
        else:
            counts["imported"] += 1
        progress(done)
    return counts

"""Products often bought together, with best sellers as the fallback: counts over orders, pure.

A `CoPurchases` table counts, over the orders it has seen, how many contain each product and each pair
of products. Recommendations for a contact are the products most often bought with what they bought
and have not bought themselves; best sellers fill the rest. See docs/adr/0006-recommendations.md.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import field
from itertools import permutations
from typing import Any

from nudge.domain.aggregates import product_key
from nudge.domain.frozen import dataclass

# What a stored table keeps (one DynamoDB item must stay far below 400 KB): the best sellers, and for
# each of them its most frequent companions. Counts past these bounds are dropped, so the table is
# an approximation for the long tail, exact for the products that matter.
PRODUCTS_KEPT = 200
NEIGHBOURS_KEPT = 10
# Product keys and titles come from storefront payloads: a key past KEY_MAX is not counted, a title is cut
# to TITLE_MAX, and `pruned` drops the slowest sellers until the stored record fits MAX_RECORD_BYTES.
KEY_MAX = 100
TITLE_MAX = 120
MAX_RECORD_BYTES = 300 * 1024


@dataclass(frozen=True, slots=True)
class CoPurchases:
    """Orders seen, orders per product, orders per ordered pair (both directions), and product titles."""

    orders: int = 0
    products: Mapping[str, int] = field(default_factory=dict)
    pairs: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    titles: Mapping[str, str] = field(default_factory=dict)


def with_order(table: CoPurchases, lines: Iterable[Mapping[str, Any]]) -> CoPurchases:
    """The table after one more order; a product on several lines of it counts once."""
    products = dict(table.products)
    pairs = {product: dict(others) for product, others in table.pairs.items()}
    titles = dict(table.titles)
    counted = _add(products, pairs, titles, lines)
    return CoPurchases(table.orders + counted, products, pairs, titles)


def from_orders(orders: Iterable[Iterable[Mapping[str, Any]]]) -> CoPurchases:
    """The table of these orders (each given as its lines), in one pass: no copy per order."""
    products: dict[str, int] = {}
    pairs: dict[str, dict[str, int]] = {}
    titles: dict[str, str] = {}
    count = sum(_add(products, pairs, titles, lines) for lines in orders)
    return CoPurchases(count, products, pairs, titles)


def _add(
    products: dict[str, int],
    pairs: dict[str, dict[str, int]],
    titles: dict[str, str],
    lines: Iterable[Mapping[str, Any]],
) -> int:
    """Count one order into the mappings; 1 if it named a product, else 0 (an order of nothing known)."""
    keys: dict[str, str] = {}
    for line in lines:
        if (key := product_key(line)) is not None and len(key) <= KEY_MAX and key not in keys:
            keys[key] = str(line.get("title") or key)[:TITLE_MAX]
    for key, title in keys.items():
        products[key] = products.get(key, 0) + 1
        titles[key] = title
    for a, b in permutations(keys, 2):
        companions = pairs.setdefault(a, {})
        companions[b] = companions.get(b, 0) + 1
    return 1 if keys else 0


def best_sellers(table: CoPurchases) -> list[str]:
    """Products by the number of orders holding them, most first; ties by product key."""
    return sorted(table.products, key=lambda p: (-table.products[p], p))


def recommend(table: CoPurchases, bought: Iterable[str], limit: int = 3) -> list[dict[str, Any]]:
    """Up to `limit` products the contact has not bought: most co-purchased with theirs first, then best sellers.

    A candidate's score is the number of orders in which it was bought with any of the contact's products
    (summed over them); ties go to the better seller, then the product key, so the answer is stable.
    """
    owned = set(bought)
    scores: dict[str, int] = {}
    for product in owned:
        for other, count in table.pairs.get(product, {}).items():
            if other not in owned:
                scores[other] = scores.get(other, 0) + count
    ranked = sorted(scores, key=lambda p: (-scores[p], -table.products.get(p, 0), p))
    picked = ranked[:limit]
    for product in best_sellers(table):
        if len(picked) >= limit:
            break
        if product not in owned and product not in picked:
            picked.append(product)
    return [
        {
            "product_id": p,
            "title": table.titles.get(p, p),
            "bought_with": scores.get(p, 0),
            "orders": table.products.get(p, 0),
        }
        for p in picked
    ]


def pruned(table: CoPurchases) -> CoPurchases:
    """The table cut to its bounds: the best-selling products, each with its most frequent companions,
    as many as fit MAX_RECORD_BYTES (a DynamoDB item holds 400 KB)."""
    kept_count = PRODUCTS_KEPT
    while True:
        cut = _cut(table, best_sellers(table)[:kept_count])
        if kept_count == 0 or record_bytes(cut) <= MAX_RECORD_BYTES:
            return cut
        kept_count = kept_count * 3 // 4


def record_bytes(table: CoPurchases) -> int:
    """The size of the stored record, as UTF-8 JSON."""
    return len(json.dumps(to_record(table), separators=(",", ":")).encode())


def _cut(table: CoPurchases, kept: list[str]) -> CoPurchases:
    pairs = {}
    for product in kept:
        companions = table.pairs.get(product, {})
        top = sorted(companions, key=lambda p: (-companions[p], p))[:NEIGHBOURS_KEPT]
        if top:
            pairs[product] = {p: companions[p] for p in top}
    keys = set(kept) | {p for companions in pairs.values() for p in companions}
    return CoPurchases(
        table.orders,
        {p: table.products[p] for p in kept},
        pairs,
        {p: t for p, t in table.titles.items() if p in keys},
    )


def merged(a: CoPurchases, b: CoPurchases) -> CoPurchases:
    """Both tables' counts added up (imported history + recent orders); titles from `b` win."""
    products = dict(a.products)
    for product, count in b.products.items():
        products[product] = products.get(product, 0) + count
    pairs = {product: dict(others) for product, others in a.pairs.items()}
    for product, others in b.pairs.items():
        companions = pairs.setdefault(product, {})
        for other, count in others.items():
            companions[other] = companions.get(other, 0) + count
    return CoPurchases(a.orders + b.orders, products, pairs, {**a.titles, **b.titles})


def to_record(table: CoPurchases) -> dict[str, Any]:
    """JSON-ready (a DynamoDB document of a few tens of KB once pruned)."""
    return {
        "orders": table.orders,
        "products": dict(table.products),
        "pairs": {product: dict(others) for product, others in table.pairs.items()},
        "titles": dict(table.titles),
    }


def from_record(record: Mapping[str, Any] | None) -> CoPurchases:
    """The table a stored record holds; an empty table for None (nothing computed yet)."""
    if not record:
        return CoPurchases()
    return CoPurchases(
        orders=int(record.get("orders", 0)),
        products={str(p): int(n) for p, n in (record.get("products") or {}).items()},
        pairs={
            str(p): {str(o): int(n) for o, n in others.items()} for p, others in (record.get("pairs") or {}).items()
        },
        titles={str(p): str(t) for p, t in (record.get("titles") or {}).items()},
    )

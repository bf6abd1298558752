"""The Segment-style API: track, identify and alias calls with Segment's field names, as canonical events.

Segment libraries add members of their own (context, integrations, sentAt, _metadata…): they are accepted
and ignored. `messageId` makes retries safe; without one, the call's own content does.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from nudge.domain.model import ContactPatch, Event, JsonDict
from nudge.domain.records import OPEN, Check, Open, record
from nudge.domain.validation import dump
from nudge.integrations.canonical import compact, line, phone_field, text_or_none
from nudge.ports import Clock, ContactRefs
from nudge.services.ingest import IngestService
from nudge.services.inputs import (
    MAX_FUTURE_SKEW,
    Instant,
    Properties,
    bounded_properties,
    email_field,
    header_text,
)

if TYPE_CHECKING:
    from pydantic import Field

MAX_CALL_BYTES = 32 * 1024  # Segment's own limits: 32 KB a call, 500 KB a batch
MAX_BATCH_BYTES = 500 * 1024
MAX_BATCH_ITEMS = 500
_USER_ID = r"^[A-Za-z0-9_.:@+-]+$"
_EVENT_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
_EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_.]{0,63}$")
# Segment's e-commerce spec names for the events nudge's flows know by their own names.
COMMERCE_EVENTS = {
    "Checkout Started": "checkout_started",
    "Order Completed": "order_placed",
    "Order Cancelled": "order_cancelled",
    "Order Refunded": "refund_created",
}
# Traits that fill contact fields; every other trait is kept in the contact's properties.
_CONTACT_TRAITS = {"email", "phone", "firstName", "first_name", "lastName", "last_name", "timezone"}
_CONSENT_TRAITS = {"email_marketing", "sms_marketing"}


# pydantic's configuration of a Segment call: other members welcome (`Open`), text stripped.
CALL: dict[str, Any] = OPEN | {"str_strip_whitespace": True}


@record
class Traits(Open):
    """Who someone is. Segment's reserved traits fill the contact; the rest become its properties."""

    __pydantic_config__ = OPEN | {"validate_by_name": True, "validate_by_alias": True}

    email: Annotated[str | None, Field(max_length=254, json_schema_extra={"format": "email"}), Check(email_field)] = (
        None
    )
    phone: Annotated[str | None, Field(description="E.164, e.g. +14155550123."), Check(phone_field)] = None
    first_name: Annotated[str | None, Field(alias="firstName", max_length=100), Check(header_text)] = None
    last_name: Annotated[str | None, Field(alias="lastName", max_length=100), Check(header_text)] = None
    email_marketing: Annotated[bool | None, Field(description="Consent to marketing email.")] = None
    sms_marketing: Annotated[bool | None, Field(description="Consent to marketing SMS.")] = None

    def _check(self) -> None:
        bounded_properties(self.extra_properties())

    def extra_properties(self) -> JsonDict:
        return {k: v for k, v in self.extra.items() if k not in _CONTACT_TRAITS | _CONSENT_TRAITS}


class InvalidCall(ValueError):
    """A call that parsed but cannot be taken (a far-future timestamp, an unusable event name)."""

    def __init__(self, pointer: str, detail: str) -> None:
        super().__init__(detail)
        self.pointer = pointer
        self.detail = detail


@record
class Context(Open):
    """Segment's context object: nudge reads `traits` (who the track call is about) and keeps nothing else."""

    traits: Traits = field(default_factory=Traits)


@record
class SegmentCall(Open):
    __pydantic_config__ = CALL

    messageId: Annotated[str | None, Field(min_length=1, max_length=200)] = None  # noqa: N815 (Segment's name)
    timestamp: Instant = None
    context: Context = field(default_factory=Context)


@record
class _PersonCall(SegmentCall):
    userId: Annotated[str | None, Field(min_length=1, max_length=128, pattern=_USER_ID)] = None  # noqa: N815
    anonymousId: Annotated[str | None, Field(min_length=1, max_length=200)] = None  # noqa: N815

    def _check(self) -> None:
        if not (self.userId or self.anonymousId):
            raise ValueError("a call needs a userId or an anonymousId")


@record
class TrackCall(_PersonCall):
    """POST /v1/track: something someone did."""

    __pydantic_config__ = CALL | {
        "json_schema_extra": {
            "examples": [
                {
                    "userId": "u_42",
                    "event": "Checkout Started",
                    "messageId": "ajs-1",
                    "context": {"traits": {"email": "gus@example.com", "firstName": "Gus"}},
                    "properties": {"checkout_id": "chk_9", "revenue": 24.0},
                }
            ]
        }
    }

    type: Literal["track"] | None = None
    event: Annotated[
        str, Field(min_length=1, max_length=200, description='e.g. "Order Completed" or "checkout_started"')
    ]
    properties: Properties = field(default_factory=dict)


@record
class IdentifyCall(_PersonCall):
    """POST /v1/identify: who someone is."""

    type: Literal["identify"] | None = None
    traits: Traits = field(default_factory=Traits)


@record
class AliasCall(SegmentCall):
    """POST /v1/alias: the anonymous visitor (or earlier id) previousId is userId."""

    type: Literal["alias"] | None = None
    previousId: Annotated[str, Field(min_length=1, max_length=200)]  # noqa: N815
    userId: Annotated[str, Field(min_length=1, max_length=128, pattern=_USER_ID)]  # noqa: N815


@record
class BatchCall(Open):
    """POST /v1/batch: up to 500 calls, each with its `type`; each gets its own result."""

    batch: Annotated[list[dict[str, Any]], Field(min_length=1, max_length=MAX_BATCH_ITEMS)]


CALLS: dict[str, type[SegmentCall]] = {"track": TrackCall, "identify": IdentifyCall, "alias": AliasCall}


def _digest(text: str, length: int = 40) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def event_type_for(name: str) -> str:
    """Segment's "Order Completed" → order_placed; any other name → its lower_snake_case form."""
    if name in COMMERCE_EVENTS:
        return COMMERCE_EVENTS[name]
    snake = re.sub(r"[^a-z0-9.]+", "_", name.strip().lower()).strip("_")
    if not _EVENT_TYPE.match(snake):
        raise ValueError("an event name needs a letter first and at most 64 characters, e.g. Checkout Started")
    return snake


def _commerce_properties(properties: dict[str, Any]) -> dict[str, Any]:
    """Segment's e-commerce members (products, revenue, coupon) under the names nudge's flows use."""
    products = properties.get("products")
    derived: dict[str, Any] = {}
    if isinstance(products, list) and "lines" not in properties:
        derived["lines"] = [
            line(
                title=p.get("name"),
                quantity=p.get("quantity"),
                price=p.get("price"),
                product_id=p.get("product_id"),
                variant_id=p.get("variant"),
                sku=p.get("sku"),
            )
            for p in products
            if isinstance(p, dict)
        ]
    if "total" not in properties and isinstance(properties.get("revenue"), int | float):
        derived["total"] = properties["revenue"]
    if "discount_codes" not in properties and isinstance(properties.get("coupon"), str):
        derived["discount_codes"] = [properties["coupon"]]
    return {**properties, **derived}


BACK_IN_STOCK_REQUESTED = "back_in_stock_requested"


def _waited_item(properties: dict[str, Any]) -> str | None:
    """The variant a "notify me" names (variant_id, Segment's `variant`, else product_id), as catalogs key it."""
    for name in ("variant_id", "variant", "product_id"):
        if (value := text_or_none(properties.get(name))) is not None:
            return value
    return None


class SegmentService:
    def __init__(self, *, ingest: IngestService, refs: ContactRefs, clock: Clock) -> None:
        self._ingest = ingest
        self._refs = refs
        self._clock = clock

    def anonymous_contact_id(self, anonymous_id: str) -> str:
        return "an_" + _digest(anonymous_id, 24)

    def contact_id(self, user_id: str | None, anonymous_id: str | None) -> str:
        """userId if given; else whoever the anonymousId was aliased to; else the anonymous contact."""
        if user_id:
            return user_id
        assert anonymous_id is not None  # the model requires one of the two
        return self._refs.resolve(f"anon:{anonymous_id}") or self.anonymous_contact_id(anonymous_id)

    def track(self, call: TrackCall) -> dict[str, Any]:
        try:
            event_type = event_type_for(call.event)
        except ValueError as exc:
            raise InvalidCall("/event", str(exc)) from None
        event = Event(
            event_id=self._event_id(call),
            type=event_type,
            contact=self._patch(call.userId, call.anonymousId, call.context.traits),
            properties=_commerce_properties(call.properties),
            occurred_at=self._occurred(call),
        )
        outcome = self._ingest.ingest(event)
        if event.type == BACK_IN_STOCK_REQUESTED and (item := _waited_item(event.properties)) is not None:
            # "Notify me": the next restock of this variant seen in a catalog webhook tells them, once.
            self._refs.wait(item, outcome.contact_id, self._clock.now())
        return outcome.as_dict() | {"type": event.type}

    def identify(self, call: IdentifyCall) -> dict[str, Any]:
        event = Event(
            event_id=self._event_id(call),
            type="identify",
            contact=self._patch(call.userId, call.anonymousId, call.traits),
            properties={},
            occurred_at=self._occurred(call),
        )
        return self._ingest.ingest(event).as_dict() | {"type": event.type}

    def alias(self, call: AliasCall) -> dict[str, Any]:
        """Merge the earlier profile into userId's (userId's values win) and send the earlier id there from now on.

        The earlier record's aggregates (orders, products, when it last did what) join userId's, so segments
        see one person; its active runs end (`merged`). Its event records and messages stay under its id.
        """
        self._occurred(call)  # refuse far-future timestamps here too
        previous_id = self.contact_id(None, call.previousId)
        earlier = self._ingest.get_contact(previous_id) or self._ingest.get_contact(call.previousId)
        known = self._ingest.get_contact(call.userId)
        merged_from = None
        if earlier is not None and earlier.contact_id != call.userId:
            merged_from = earlier.contact_id

            def keep(mine: Any, theirs: Any) -> Any:
                return theirs if mine is None else None  # None in a patch keeps the stored value

            self._ingest.identify(
                ContactPatch(
                    external_id=call.userId,
                    email=keep(known and known.email, earlier.email),
                    phone=keep(known and known.phone, earlier.phone),
                    first_name=keep(known and known.first_name, earlier.first_name),
                    last_name=keep(known and known.last_name, earlier.last_name),
                    timezone=keep(known and known.timezone, earlier.timezone),
                    email_marketing=keep(known and known.email_marketing, earlier.email_marketing),
                    sms_marketing=keep(known and known.sms_marketing, earlier.sms_marketing),
                    properties={**earlier.properties, **(known.properties if known else {})},
                )
            )
            self._ingest.absorb(call.userId, earlier)  # its aggregates join; its runs end
            self._ingest.identify(ContactPatch(external_id=earlier.contact_id, properties={"merged_into": call.userId}))
        elif known is None:
            self._ingest.identify(ContactPatch(external_id=call.userId))
        self._refs.link(f"anon:{call.previousId}", call.userId, self._clock.now())
        return {"contact_id": call.userId, "merged_from": merged_from}

    def _patch(self, user_id: str | None, anonymous_id: str | None, traits: Traits) -> ContactPatch:
        return ContactPatch(
            external_id=self.contact_id(user_id, anonymous_id),
            email=traits.email,
            phone=traits.phone,
            first_name=traits.first_name,
            last_name=traits.last_name,
            email_marketing=traits.email_marketing,
            sms_marketing=traits.sms_marketing,
            properties=compact(traits.extra_properties() | ({"anonymous_id": anonymous_id} if anonymous_id else {})),
        )

    def _event_id(self, call: SegmentCall) -> str:
        if call.messageId:
            message_id = call.messageId
            return "segment:" + (message_id if _EVENT_ID.match(message_id) else "h" + _digest(message_id))
        # No messageId: the same call sent twice (a retry) still maps to one event.
        content = dump(call, mode="json", exclude={"context"}, exclude_none=True)
        content.pop("sentAt", None)
        return "segment:b" + _digest(json.dumps(content, sort_keys=True, default=str))

    def _occurred(self, call: SegmentCall) -> datetime:
        now = self._clock.now()
        if call.timestamp is None:
            return now
        occurred = call.timestamp.astimezone(UTC)
        if occurred > now + MAX_FUTURE_SKEW:
            raise InvalidCall("/timestamp", f"timestamp is more than {MAX_FUTURE_SKEW} in the future")
        return occurred

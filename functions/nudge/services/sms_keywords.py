"""Use case: inbound SMS keywords — STOP and its synonyms opt out, START opts back in, HELP answers."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import datetime

from nudge.domain import sms
from nudge.domain.frozen import dataclass
from nudge.domain.model import Channel
from nudge.domain.suppression import ConsentRecord, Suppression, address_key
from nudge.ports import AddressBook, OutgoingSms, Texter

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class InboundSms:
    from_number: str
    body: str
    at: datetime
    message_id: str | None = None


class SmsKeywordService:
    def __init__(self, *, store: AddressBook, texter: Texter, help_text: str | Callable[[], str]) -> None:
        """`help_text`: the HELP reply, or how to make it at the first HELP (once)."""
        self._store = store
        self._texter = texter
        self._help = help_text

    def handle(self, inbound: InboundSms) -> str:
        """What the message did: opted_out | opted_in | helped | ignored."""
        found = sms.keyword_of(inbound.body)
        if found is None:
            return "ignored"
        keyword, word = found
        try:
            phone = sms.to_e164(inbound.from_number)
        except ValueError:
            log.warning("inbound SMS from an unusable number", extra={"keyword": word})
            return "ignored"
        key = address_key(Channel.SMS, phone)
        source = f"sms_keyword:{word}"
        if keyword is sms.Keyword.OPT_OUT:
            self._store.suppress(key, Suppression.SMS_OPTED_OUT, inbound.at)
            self._store.record_consent(ConsentRecord(key, Channel.SMS, False, inbound.at, source))
            return "opted_out"
        if keyword is sms.Keyword.OPT_IN:
            self._store.lift_suppression(key, Suppression.SMS_OPTED_OUT)
            self._store.record_consent(ConsentRecord(key, Channel.SMS, True, inbound.at, source))
            # The provider keeps its own opt-out list: lift it too, or sends after START still bounce.
            self._texter.opt_in(phone)
            return "opted_in"
        self._texter.send(OutgoingSms(to=phone, text=self._help_text, transactional=True))
        return "helped"

    @functools.cached_property
    def _help_text(self) -> str:
        return self._help() if callable(self._help) else self._help

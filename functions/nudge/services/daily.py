"""Use case: the daily job. Segment reviews, RFM scores against the whole customer base, co-purchases.

The job is a set of **pieces**, each small enough for one invocation and safe to do twice (ADR 0007,
"The daily job"). At 04:00 UTC the sweep function plans the day: three pieces on the jobs queue.

- `reviews`: contacts whose segment membership may have changed with time (one index query).
- `base`: one read-only pass over the contacts for the whole-base statistics (the RFM cut points); it
  stores them and fans out one `score` piece per Scan segment, carrying the cut points.
- `score` (segment i of n): scores each contact of its segment and writes only the scores that moved.
- `copurchases`: the recommendations table from the retained orders.

A piece that reaches its deadline stops after the contact it is on and puts a continuation on the queue
(the DynamoDB cursor, or for reviews nothing: a reviewed contact leaves the index). A contact whose work
raises is counted and logged, not fatal: the piece goes on, and tomorrow tries it again. Many errors in a
row mean the table, not the contact, is failing: the piece raises and SQS retries it.

Every piece records what it did under the day's date (`job_log`), replacing its own record if done again,
so `status(day)` adds up exactly. `run()` does a whole day in this process (simulations, tests, benches).
"""

from __future__ import annotations

import logging
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import field
from datetime import date, datetime
from typing import Any, Final

from nudge.domain import predictions, send_time
from nudge.domain.frozen import dataclass
from nudge.domain.lifecycle import RfmCuts, RfmInputs, cuts_of, score
from nudge.domain.timezones import zone_for
from nudge.ports import Census, Clock, Documents, JobLog
from nudge.services.ingest import IngestOutcome, IngestService
from nudge.services.recommendations import CoPurchaseBook

log = logging.getLogger(__name__)

RFM_DOCUMENT = "rfm_cuts"
REVIEWS, BASE, SCORE, COPURCHASES = "reviews", "base", "score", "copurchases"
KINDS: Final = (REVIEWS, BASE, SCORE, COPURCHASES)
# Scan segments of the scoring pass: each scores 1/8 of the base, and continues itself if it runs out of time.
SEGMENTS = 8
# This many failing contacts in a row and the piece gives up (raises): that is an outage, not a bad contact.
ERRORS_IN_A_ROW = 25


class BadPiece(ValueError):
    """The jobs-queue record is not a piece of the daily job; it goes to the dead-letter queue."""


def with_progress(body: dict[str, Any], part: int, cursor: dict[str, Any] | None) -> dict[str, Any]:
    """A jobs-queue body with how far its piece got: `part` (if a continuation) and `cursor` (if any)."""
    if part:
        body["part"] = part
    if cursor is not None:
        body["cursor"] = cursor
    return body


@dataclass(frozen=True, slots=True)
class Piece:
    """One resumable piece of a day's job: the body of a jobs-queue message."""

    kind: str
    day: str  # the planned day (ISO date): its pieces' records are kept together
    segment: int = 0
    of: int = 1
    part: int = 0  # 0 for the planned piece, 1, 2, … for its continuations
    cursor: dict[str, Any] | None = None  # where a scan stopped (DynamoDB's LastEvaluatedKey)
    cuts: dict[str, Any] | None = None  # score pieces: the cut points the base piece computed
    model: dict[str, Any] | None = None  # score pieces: the prediction model the base piece fitted (ADR 0018)

    @property
    def key(self) -> str:
        """Its record's name in the day's log: a piece done twice replaces its record."""
        return f"{self.kind}-{self.segment}of{self.of}-{self.part}"

    def then(self, cursor: dict[str, Any] | None = None) -> Piece:
        """The continuation of this piece, from `cursor`."""
        return Piece(self.kind, self.day, self.segment, self.of, self.part + 1, cursor, self.cuts, self.model)

    def as_payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {"job": "daily", "piece": self.kind, "day": self.day}
        if self.kind == SCORE:
            body.update(segment=self.segment, of=self.of, cuts=self.cuts, model=self.model)
        return with_progress(body, self.part, self.cursor)

    @staticmethod
    def parse(body: Any) -> Piece:
        if not isinstance(body, dict) or body.get("job") != "daily":
            raise BadPiece("expected a daily-job piece: a JSON object with job 'daily'")
        kind, day = body.get("piece"), body.get("day")
        if kind not in KINDS:
            raise BadPiece(f"piece must be one of {', '.join(KINDS)}, not {kind!r}")
        try:
            date.fromisoformat(day)  # type: ignore[arg-type]
        except (TypeError, ValueError) as exc:
            raise BadPiece(f"day must be an ISO date, not {day!r}") from exc
        segment, of, part = body.get("segment", 0), body.get("of", 1), body.get("part", 0)
        if not all(isinstance(n, int) and not isinstance(n, bool) for n in (segment, of, part)):
            raise BadPiece("segment, of and part must be integers")
        if not (0 <= segment < of and part >= 0):
            raise BadPiece(f"segment {segment} of {of} is not a Scan segment")
        cursor, cuts, model = body.get("cursor"), body.get("cuts"), body.get("model")
        if not all(isinstance(value, dict | None) for value in (cursor, cuts, model)):
            raise BadPiece("cursor, cuts and model must be objects")
        return Piece(kind, day, segment, of, part, cursor, cuts, model)  # type: ignore[arg-type]


@dataclass(slots=True)
class PieceOutcome:
    piece: Piece
    contacts: int = 0  # contacts looked at (reviewed, or scored)
    changed: int = 0  # reviews that moved a segment, or scores that changed (only those are written)
    predicted: int = 0  # score pieces: contacts whose predictions moved (written with the score)
    started: int = 0  # runs the moves started
    exited: int = 0
    errors: int = 0  # contacts whose work raised (logged with their id; tried again tomorrow)
    buyers: int = 0  # base: buyers the cut points were computed from
    orders: int = 0  # copurchases: orders behind the table
    products: int = 0
    follow: list[Piece] = field(default_factory=list)  # pieces to put on the queue now
    outcomes: list[IngestOutcome] | None = None  # kept only when asked (in-process runs), never recorded
    cuts: RfmCuts | None = None
    model: predictions.Model | None = None
    streak: int = 0  # contacts failing in a row

    @property
    def finished(self) -> bool:
        """False if it stopped at its deadline and a continuation follows."""
        return not any(p.kind == self.piece.kind and p.part > self.piece.part for p in self.follow)

    def record(self) -> dict[str, Any]:
        counts = ("contacts", "changed", "predicted", "started", "exited", "errors", "buyers", "orders", "products")
        return {"piece": self.piece.kind, "finished": self.finished, **{name: getattr(self, name) for name in counts}}

    def note(self, outcome: IngestOutcome) -> None:
        if self.outcomes is not None:
            self.outcomes.append(outcome)
        self.started += len(outcome.started)
        self.exited += len(outcome.exited)


PREDICTIONS_DOCUMENT = "predictions_model"


@dataclass(slots=True)
class RescoreOutcome:
    buyers: int = 0
    rescored: int = 0  # contacts whose score changed (only those are written)
    cuts: RfmCuts | None = None
    model: predictions.Model | None = None
    predicted: int = 0  # contacts whose predictions were written (changed beyond Predictions.close_to)
    outcomes: list[IngestOutcome] = field(default_factory=list)  # segment moves the new scores caused


@dataclass(slots=True)
class DailyOutcome:
    """A day's pieces, added up (from this process's pieces, or from the day's log)."""

    day: str
    reviewed: int = 0
    started: int = 0
    exited: int = 0
    buyers: int = 0
    rescored: int = 0
    predicted: int = 0
    errors: int = 0
    copurchase_orders: int = 0
    products: int = 0
    pieces: int = 0
    unfinished: int = 0  # pieces that stopped at their deadline (their continuations are counted too)

    def add(self, record: Mapping[str, Any]) -> None:
        kind = record.get("piece")
        self.pieces += 1
        self.unfinished += 0 if record.get("finished", True) else 1
        self.started += int(record.get("started", 0))
        self.exited += int(record.get("exited", 0))
        self.errors += int(record.get("errors", 0))
        if kind == REVIEWS:
            self.reviewed += int(record.get("contacts", 0))
        elif kind == BASE:
            self.buyers += int(record.get("buyers", 0))
        elif kind == SCORE:
            self.rescored += int(record.get("changed", 0))
            self.predicted += int(record.get("predicted", 0))
        elif kind == COPURCHASES:
            self.copurchase_orders += int(record.get("orders", 0))
            self.products += int(record.get("products", 0))

    def as_dict(self) -> dict[str, object]:
        return {
            "day": self.day,
            "reviewed": self.reviewed,
            "started": self.started,
            "exited": self.exited,
            "buyers": self.buyers,
            "rescored": self.rescored,
            "errors": self.errors,
            "predicted": self.predicted,
            "copurchase_orders": self.copurchase_orders,
            "products": self.products,
            "pieces": self.pieces,
        }


class DailyJob:
    def __init__(
        self,
        *,
        ingest: IngestService,
        census: Census,
        documents: Documents,
        job_log: JobLog,
        clock: Clock,
        copurchases: CoPurchaseBook,
        segments: int = SEGMENTS,
        default_timezone: str = "UTC",
    ) -> None:
        self._ingest = ingest
        self.copurchases = copurchases
        self._census = census
        self._documents = documents
        self._log = job_log
        self._clock = clock
        self._segments = segments
        self._zone = default_timezone
        self.requirements = predictions.REQUIREMENTS  # what the base needs before predictions (ADR 0018)

    # planning and doing pieces ---------------------------------------------------------------------------

    def plan(self) -> list[Piece]:
        """Today's first pieces (the sweep function puts them on the jobs queue at 04:00 UTC)."""
        day = self._clock.now().date().isoformat()
        return [Piece(REVIEWS, day), Piece(BASE, day), Piece(COPURCHASES, day)]

    def work(self, piece: Piece, deadline: datetime | None = None, *, keep: bool = False) -> PieceOutcome:
        """Do one piece (until `deadline`, if given), record it in the day's log, and say what follows.

        With `keep`, the outcome lists each contact's segment moves and runs (in-process runs only: a
        scoring piece in Lambda may move a hundred thousand contacts).
        """
        done = PieceOutcome(piece, outcomes=[] if keep else None)
        if piece.kind == REVIEWS:
            self._reviews(done, deadline)
        elif piece.kind == BASE:
            self._base(done)
        elif piece.kind == SCORE:
            self._score(done, deadline)
        else:
            table = self.copurchases.recompute()
            done.orders, done.products = table.orders, len(table.products)
        self._log.record_piece(piece.day, piece.key, done.record(), self._clock.now())
        log.info("daily piece done", extra={"key": piece.key, "day": piece.day, **done.record()})
        return done

    def run(self) -> DailyOutcome:
        """A whole day in this process, piece after piece, without deadlines."""
        pieces = self.plan()
        total = DailyOutcome(day=pieces[0].day)
        for done in self._drain(pieces):
            total.add(done.record())
        return total

    def status(self, day: str) -> DailyOutcome:
        """What the day's pieces did so far, from the log (each piece counted once however often it ran)."""
        total = DailyOutcome(day=day)
        for record in self._log.pieces_of(day).values():
            total.add(record)
        return total

    def rescore(self) -> RescoreOutcome:
        """The RFM part alone, in this process: the base pass, then every score piece."""
        base = self.work(Piece(BASE, self._clock.now().date().isoformat()))
        found = RescoreOutcome(buyers=base.buyers, cuts=base.cuts, model=base.model)
        for done in self._drain(base.follow, keep=True):
            found.rescored += done.changed
            found.predicted += done.predicted
            found.outcomes.extend(done.outcomes or ())
        return found

    def _drain(self, pieces: Iterable[Piece], *, keep: bool = False) -> Iterator[PieceOutcome]:
        """Work pieces in this process, each followed by the pieces it queued, until none is left."""
        queue = deque(pieces)
        while queue:
            done = self.work(queue.popleft(), keep=keep)
            queue.extend(done.follow)
            yield done

    def rfm_cuts(self) -> RfmCuts | None:
        """The cut points the last run stored (for reports), or None before the first run."""
        record = self._documents.get_document(RFM_DOCUMENT)
        return RfmCuts.from_record(record) if record else None

    # the pieces ----------------------------------------------------------------------------------------------

    def _reviews(self, done: PieceOutcome, deadline: datetime | None) -> None:
        """Review every contact whose membership may have changed with time by now; continue if out of time."""
        now = self._clock.now()
        for contact_id in self._census.contacts_to_review(now):
            self._each(done, contact_id, self._ingest.review, contact_id)
            if self._past(deadline):  # after one contact at least: every piece moves the day forward
                done.follow.append(done.piece.then())  # reviewed contacts have left the index: no cursor
                return

    def _base(self, done: PieceOutcome) -> None:
        """Cut the customer base into RFM quintiles, store the cuts, and fan out the scoring pieces.

        One read-only pass: three floats per buyer (24 MB at 1M buyers). Done again whole if it fails.
        """
        now = self._clock.now()
        recency, orders, spent = array("d"), array("d"), array("d")
        summaries = predictions.SummaryColumns()
        curve = send_time.ShopCurve()  # engagement by local hour: best-time sends shrink toward it
        for contact in self._census.all_contacts():
            if contact.aggregates.engaged_hours:
                zone = zone_for(contact, self._zone)
                curve.add(send_time.local_hours(contact.aggregates.engaged_hours, zone, now.date()))
            if (inputs := RfmInputs.of(contact.aggregates, now)) is not None:
                recency.append(inputs.recency_days)
                orders.append(inputs.orders)
                spent.append(inputs.spent)
            if (summary := predictions.BuyerSummary.of(contact.aggregates, now)) is not None:
                summaries.append(summary)
        done.cuts = cuts_of(recency, orders, spent)
        done.buyers = len(recency)
        done.model = predictions.fit(summaries, self.requirements)
        record = done.cuts.to_record() if done.cuts is not None else None
        if record is not None:
            self._documents.put_document(RFM_DOCUMENT, {**record, "computed_at": now.isoformat()}, now)
        curve_record = {**curve.to_record(), "computed_at": now.isoformat()}
        self._documents.put_document(send_time.CURVE_DOCUMENT, curve_record, now)
        model = done.model.to_record()
        self._documents.put_document(PREDICTIONS_DOCUMENT, {**model, "computed_at": now.isoformat()}, now)
        day, of = done.piece.day, self._segments
        done.follow.extend(Piece(SCORE, day, segment, of, cuts=record, model=model) for segment in range(of))

    def _score(self, done: PieceOutcome, deadline: datetime | None) -> None:
        """Score each contact of the piece's Scan segment against its cut points; write the ones that moved."""
        piece, now = done.piece, self._clock.now()
        cuts = RfmCuts.from_record(piece.cuts) if piece.cuts is not None else None
        model = predictions.Model.from_record(piece.model) if piece.model is not None else None
        for contact, cursor in self._census.contacts_segment(piece.segment, piece.of, piece.cursor):
            inputs = RfmInputs.of(contact.aggregates, now)
            new = score(inputs, cuts) if inputs is not None and cuts is not None else None
            summary = predictions.BuyerSummary.of(contact.aggregates, now)
            predicted = predictions.predict(model, summary, now) if summary is not None and model else None
            moved = predicted != contact.predicted and not (predicted and predicted.close_to(contact.predicted, now))
            if new != contact.rfm or moved:
                if self._each(done, contact.contact_id, self._ingest.rescore, contact.contact_id, new, predicted):
                    done.changed += new != contact.rfm
                    done.predicted += moved
            else:
                done.contacts += 1
            if cursor is not None and self._past(deadline):  # after one contact at least, as reviews
                done.follow.append(piece.then(cursor))
                return

    def _each(self, done: PieceOutcome, contact_id: str, work: Callable[..., IngestOutcome], *args: Any) -> bool:
        """One contact's work: noted if it succeeds, counted and logged if it raises (the piece goes on)."""
        done.contacts += 1
        try:
            done.note(work(*args))
        except Exception as exc:
            done.errors += 1
            done.streak += 1
            log.warning(
                "daily piece: a contact failed",
                extra={"key": done.piece.key, "contact_id": contact_id, "error": type(exc).__name__},
                exc_info=True,
            )
            if done.streak >= ERRORS_IN_A_ROW:
                raise
            return False
        done.streak = 0
        return True

    def _past(self, deadline: datetime | None) -> bool:
        return deadline is not None and self._clock.now() >= deadline

    def predictions_model(self) -> predictions.Model | None:
        """The model the last run fitted, or why there is none (for reports); None before the first run."""
        record = self._documents.get_document(PREDICTIONS_DOCUMENT)
        return predictions.Model.from_record(record) if record else None

"""Use case: campaigns. Create, pause, resume and cancel one; resolve its audience in resumable pieces.

ADR 0019. A campaign is a document (`campaign.<id>`: its definition, status and epoch). Creating it puts
one piece per DynamoDB Scan segment on the jobs queue (the daily job's queue, consumed by the sweep
function). A piece scans its segment from its cursor, and for each contact in the audience with consent
on a channel of the campaign starts the contact's run of the campaign's flow (`Campaign.recipient_run`:
a deterministic id, so a piece done twice starts nothing twice). The runs go through the durable send
path (ADR 0007): the worker applies suppression, smart sending, caps and quiet hours, and sends at the
SES rate. A piece starts its share of what flows left of the send rate in the last minute (`pace`), due
spread over the minute, then continues itself a minute later, so the campaign never holds more than about
a minute of sends in flight (pause stops it within that minute); its sends take only spare send slots
(`SendThrottle.spare`), so flows keep priority. Each segment's progress (cursor, counts) is in the job
log under `campaign.<id>`, replaced as it moves, so resume continues where each segment stopped.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from nudge.domain import engine, send_time
from nudge.domain.campaigns import (
    HOLDOUT,
    TRANSITIONS,
    Campaign,
    CampaignStatus,
    campaign_id_of,
    choose_winner,
)
from nudge.domain.flows import Flow, FlowCatalog
from nudge.domain.frozen import dataclass
from nudge.domain.model import Category, Channel, Contact, Run
from nudge.ports import Census, Clock, ConflictError, Documents, JobLog, JobQueue

if TYPE_CHECKING:  # the run service is handed in; importing it would load the renderer (ADR 0020)
    from nudge.services.runs import RunService

log = logging.getLogger(__name__)

DOCUMENT_PREFIX = "campaign."
SEGMENTS = 8
# A campaign starts, each minute, the runs of what flows left of the SES rate in the last minute (their
# sends counted by the send throttle), less a reserve flows keep even when idle; never less than a floor.
# Its sends take only spare slots (SendThrottle.spare), so flows keep priority whatever it started.
FLOW_RESERVE = 0.05
MIN_SHARE = 0.1
PACE = timedelta(minutes=1)
MAX_JOB_DELAY = timedelta(minutes=15)  # SQS DelaySeconds at most; a piece early for its start waits again
# A piece records where it stands every this many contacts, so a retry resumes there (ADR 0019).
CHECKPOINT_EVERY = 100
# Where each campaign segment's piece notes when it ran and how many sends it started for its minute, so
# campaigns sending at once share the rate (`CampaignService._sharing`); one record per campaign segment.
ACTIVE_LOG = "campaigns.active"
HAND_OFF_BATCH = 10  # first wake-ups a SendMessageBatch holds
# A paused campaign's due messages look again this often (resume takes effect within it).
HOLD_RECHECK = timedelta(minutes=5)
# How long the worker trusts what it read of a campaign's status: pause and cancel reach sends within it.
STATUS_TTL = timedelta(seconds=30)
# A status write lost to another writer (a pause against a piece) is decided again on what won, this often.
WRITE_ATTEMPTS = 5


class CampaignError(ValueError):
    """A request about a campaign that cannot be done (the API answers 404 or 409)."""


class UnknownCampaign(CampaignError):
    pass


class CampaignConflict(CampaignError):
    """Another campaign holds the id, or the action does not apply to the campaign's status."""


class InvalidCampaign(CampaignError):
    """The campaign's templates or segments do not check (`problems`, as `nudge validate` words them)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class BadCampaignPiece(ValueError):
    """A jobs-queue record that is not a campaign piece: to the dead-letter queue."""


@dataclass(frozen=True, slots=True)
class CampaignRecord:
    campaign: Campaign
    status: CampaignStatus
    created_at: datetime
    updated_at: datetime
    epoch: int = 0  # bumped by every resume: pieces queued before it stand down (no two chains per segment)
    version: int = 0  # the document's version as read: a status write is conditional on it (not stored inside)
    ab_verdict: dict[str, Any] | None = None  # the A/B test's verdict (choose_winner) once decided

    @property
    def winner(self) -> str | None:
        return str(self.ab_verdict["winner"]) if self.ab_verdict else None

    def to_document(self) -> dict[str, Any]:
        from nudge.domain.validation import dump  # only where a campaign is written (ADR 0020, Decision 13)

        document = {
            "definition": dump(self.campaign, mode="json", exclude_none=True),
            "status": self.status.value,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "epoch": self.epoch,
        }
        if self.ab_verdict is not None:
            document["ab_verdict"] = self.ab_verdict
        return document

    @staticmethod
    def from_document(document: Mapping[str, Any], version: int = 0) -> CampaignRecord:
        from nudge.domain.validation import validate  # only where a campaign is read (ADR 0020, Decision 13)

        return CampaignRecord(
            campaign=validate(Campaign, document["definition"]),
            status=CampaignStatus(document["status"]),
            created_at=datetime.fromisoformat(document["created_at"]),
            updated_at=datetime.fromisoformat(document["updated_at"]),
            epoch=int(document.get("epoch", 0)),
            version=version,
            ab_verdict=document.get("ab_verdict"),
        )

    def view(self) -> dict[str, Any]:
        return {
            "id": self.campaign.id,
            "flow_id": self.campaign.flow_id,
            "status": self.status.value,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class CampaignPiece:
    """One Scan segment of a campaign's audience, from `cursor` on: the body of a jobs-queue message."""

    campaign_id: str
    segment: int
    of: int
    epoch: int = 0
    cursor: dict[str, Any] | None = None
    fan_out: bool = False  # the one piece that waits for the start, then queues the segments' pieces
    decide: bool = False  # the one piece that waits for an A/B test's wait, chooses, then queues the rest's
    rest: bool = False  # a segment's piece of the rest of an A/B campaign's audience (after the winner)

    @property
    def key(self) -> str:
        return f"{'rest-' if self.rest else ''}segment-{self.segment}of{self.of}"

    def as_payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "job": "campaign",
            "campaign": self.campaign_id,
            "segment": self.segment,
            "of": self.of,
            "epoch": self.epoch,
        }
        if self.cursor is not None:
            body["cursor"] = self.cursor
        for flag in ("fan_out", "decide", "rest"):
            if getattr(self, flag):
                body[flag] = True
        return body

    @staticmethod
    def parse(body: Any) -> CampaignPiece:
        if not isinstance(body, dict) or body.get("job") != "campaign":
            raise BadCampaignPiece("expected a campaign piece: a JSON object with job 'campaign'")
        campaign, cursor = body.get("campaign"), body.get("cursor")
        numbers = [body.get("segment", 0), body.get("of", 1), body.get("epoch", 0)]
        if not isinstance(campaign, str) or not campaign:
            raise BadCampaignPiece("campaign must name a campaign")
        if not all(isinstance(n, int) and not isinstance(n, bool) for n in numbers):
            raise BadCampaignPiece("segment, of and epoch must be integers")
        segment, of, epoch = numbers
        if not 0 <= segment < of or epoch < 0:
            raise BadCampaignPiece(f"segment {segment} of {of} is not a Scan segment")
        if not isinstance(cursor, dict | None):
            raise BadCampaignPiece("cursor must be an object")
        flags = {flag: body.get(flag) is True for flag in ("fan_out", "decide", "rest")}
        if sum(flags.values()) > 1:
            raise BadCampaignPiece("a piece is one of fan_out, decide or rest")
        return CampaignPiece(campaign, segment, of, epoch, cursor, **flags)


@dataclass(slots=True)
class CampaignPieceOutcome:
    piece: CampaignPiece
    # worked | waiting | fanned_out | decided | stood_down (paused, cancelled, an older epoch) | missing
    status: str = "worked"
    contacts: int = 0  # contacts scanned
    started: int = 0  # runs started (recipients; with a holdout, its members' runs too, which send nothing)
    holdout: int = 0  # of those, the holdout's
    later: int = 0  # in the audience, left for the A/B test's winner (the rest's pieces start them)
    existing: int = 0  # recipients whose run already existed (a piece done again)
    unreachable: int = 0  # in the audience, but with no consent or address for any of its channels
    done: bool = False  # the segment is finished
    follow: list[tuple[CampaignPiece, timedelta]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class CampaignProgress:
    """A campaign's resolution so far, added up over its segments' records."""

    status: str
    segments_done: int
    segments: int
    contacts: int
    recipients: int
    unreachable: int
    holdout: int = 0
    ab_test: dict[str, Any] | None = None  # the verdict, once decided

    def as_dict(self) -> dict[str, Any]:
        found = {
            "status": self.status,
            "segments_done": self.segments_done,
            "segments": self.segments,
            "contacts": self.contacts,
            "recipients": self.recipients,
            "unreachable": self.unreachable,
            "holdout": self.holdout,
        }
        return {**found, "ab_test": self.ab_test} if self.ab_test is not None else found


def document_name(campaign_id: str) -> str:
    return DOCUMENT_PREFIX + campaign_id


class CampaignCatalog(FlowCatalog):
    """The flows, plus each campaign's flow while it is not cancelled (read through a short cache).

    What the worker sees: a cancelled campaign's flow is gone, so its runs exit and their messages are
    skipped (`flow_removed`); a paused one's sends are held (`held`), deferred until it resumes.
    """

    def __init__(self, flows: FlowCatalog, documents: Documents, clock: Clock, *, ttl: timedelta = STATUS_TTL) -> None:
        super().__init__(list(flows))
        self._documents = documents
        self._clock = clock
        self._ttl = ttl
        self._cache: dict[str, tuple[datetime, CampaignRecord | None, Flow | None]] = {}

    def get(self, flow_id: str) -> Flow | None:
        campaign_id = campaign_id_of(flow_id)
        if campaign_id is None:
            return super().get(flow_id)
        record, flow = self._read(campaign_id)
        return flow if record is not None and record.status is not CampaignStatus.CANCELLED else None

    def held(self, flow_id: str) -> datetime | None:
        """Until when a campaign's sends wait (it is paused), or None: they go."""
        campaign_id = campaign_id_of(flow_id)
        if campaign_id is None:
            return None
        record, _ = self._read(campaign_id)
        if record is not None and record.status is CampaignStatus.PAUSED:
            return self._clock.now() + HOLD_RECHECK
        return None

    def forget(self, campaign_id: str) -> None:
        self._cache.pop(campaign_id, None)

    def _read(self, campaign_id: str) -> tuple[CampaignRecord | None, Flow | None]:
        now = self._clock.now()
        cached = self._cache.get(campaign_id)
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1], cached[2]
        document = self._documents.get_document(document_name(campaign_id))
        record = CampaignRecord.from_document(document) if document else None
        flow: Flow | None = None
        if record is not None:
            before = cached[1] if cached is not None else None
            unchanged = before is not None and (before.campaign, before.winner) == (record.campaign, record.winner)
            flow = cached[2] if unchanged and cached is not None else record.campaign.as_flow(record.winner)
        self._cache[campaign_id] = (now, record, flow)
        return record, flow


class CampaignService:
    def __init__(
        self,
        *,
        documents: Documents,
        census: Census,
        job_log: JobLog,
        runs: RunService,
        clock: Clock,
        jobs: JobQueue | None,
        per_minute: int,
        default_timezone: str = "UTC",
        segments: int = SEGMENTS,
        catalog: CampaignCatalog | None = None,
        check: Callable[[Campaign], list[str]] = lambda campaign: [],
        step_counts: Callable[[str], dict[str, dict[str, int]]] = lambda flow_id: {},
        flows_used: Callable[[], tuple[int, int]] = lambda: (0, 0),
    ) -> None:
        self._documents = documents
        self._census = census
        self._log = job_log
        self._runs = runs
        self._clock = clock
        self._jobs = jobs
        self._per_minute = max(1, per_minute)  # the SES rate, a minute of it
        self._flows_used = flows_used  # slots flows and campaigns took, ever (SendThrottle.used)
        self._zone = default_timezone
        self._segments = segments
        self._catalog = catalog
        self._check = check
        self._counts = step_counts  # an A/B test's variants: deliveries, opens, clicks per step (the counters)

    # the API's actions -----------------------------------------------------------------------------------

    def get(self, campaign_id: str) -> CampaignRecord | None:
        found = self._documents.get_versioned_document(document_name(campaign_id))
        return CampaignRecord.from_document(*found) if found else None

    def create(self, campaign: Campaign) -> tuple[CampaignRecord, bool]:
        """Store the campaign and queue its pieces; (record, created). The same definition again writes
        nothing; while the campaign is still `scheduled` it queues the fan-out piece again, since the first
        request may have died between storing the campaign and queueing it (the client's retry is what
        repairs that; a fan-out done twice starts nothing twice). Another definition under the same id is a
        CampaignConflict."""
        if problems := self._check(campaign):
            raise InvalidCampaign(problems)  # before anything is written
        now = self._clock.now()
        existing = self.get(campaign.id)
        if existing is None:
            try:
                record = self._save(CampaignRecord(campaign, CampaignStatus.SCHEDULED, now, now))
            except ConflictError:  # the same id posted twice at once: the other request created it
                existing = self.get(campaign.id)
                if existing is None:
                    raise CampaignConflict(f"campaign {campaign.id!r} is being written: try again") from None
        if existing is not None:
            if existing.campaign != campaign:
                raise CampaignConflict(f"campaign {campaign.id!r} exists with another definition")
            if existing.status is CampaignStatus.SCHEDULED:
                self._queue([(self._fan_out(existing), self._until_start(existing))])
            return existing, False
        self._queue([(self._fan_out(record), self._until_start(record))])
        log.info("campaign created", extra={"campaign": campaign.id})
        return record, True

    def act(self, campaign_id: str, action: str) -> CampaignRecord:
        """pause | resume | cancel. A repeated action (pause a paused campaign) is a no-op.

        The write is conditional on the version read: if a piece moved the status meanwhile (`sending` ->
        `sent`), the action is decided again on what the piece wrote, and never overwrites it blindly."""
        for _ in range(WRITE_ATTEMPTS):
            record = self.get(campaign_id)
            if record is None:
                raise UnknownCampaign(f"no campaign {campaign_id!r}")
            target = TRANSITIONS[action].get(record.status)
            if target is None:
                if record.status is {"pause": CampaignStatus.PAUSED, "cancel": CampaignStatus.CANCELLED}.get(action):
                    return record
                raise CampaignConflict(f"campaign {campaign_id!r} is {record.status.value}: it cannot {action}")
            epoch = record.epoch + 1 if action == "resume" else record.epoch
            changed = replace(record, status=target, updated_at=self._clock.now(), epoch=epoch)
            unfinished = self._unfinished(changed) if action == "resume" else []
            if action == "resume" and not unfinished:
                changed = replace(changed, status=CampaignStatus.SENT)
            try:
                changed = self._save(changed)
            except ConflictError:
                continue
            break
        else:
            raise CampaignConflict(f"campaign {campaign_id!r} kept changing: try {action} again")
        wait = self._until_start(changed)
        # Before its start nothing is resolved yet: one piece waits for it, as after create.
        self._queue([(self._fan_out(changed), wait)] if wait > timedelta(0) else [(p, wait) for p in unfinished])
        log.info("campaign %s", action, extra={"campaign": campaign_id, "status": target.value})
        return changed

    def progress(self, campaign_id: str) -> CampaignProgress | None:
        record = self.get(campaign_id)
        if record is None:
            return None
        logged = self._log.pieces_of(document_name(campaign_id))
        records = logged.values()
        first = [r for key, r in logged.items() if not key.startswith("rest-")]  # the rest's pieces scan again
        ab = record.campaign.ab_test is not None
        return CampaignProgress(
            status=record.status.value,
            segments_done=sum(1 for key, r in logged.items() if r.get("done") and key.startswith("rest-") == ab),
            segments=self._segments,
            contacts=sum(int(r.get("contacts", 0)) for r in first),
            recipients=sum(
                int(r.get("started", 0)) + int(r.get("existing", 0)) - int(r.get("holdout", 0)) for r in records
            ),
            unreachable=sum(int(r.get("unreachable", 0)) for r in first),
            holdout=sum(int(r.get("holdout", 0)) for r in records),
            ab_test=record.ab_verdict,
        )

    # the pieces --------------------------------------------------------------------------------------------

    def work(self, piece: CampaignPiece, deadline: datetime | None = None) -> CampaignPieceOutcome:
        """Resolve up to a minute's share of the piece's segment, start those runs, and say what follows."""
        done = CampaignPieceOutcome(piece)
        record = self.get(piece.campaign_id)
        if record is None:
            done.status = "missing"
            return done
        if record.status is CampaignStatus.PAUSED or record.status is CampaignStatus.CANCELLED:
            done.status = "stood_down"  # resume queues the segment again from its recorded cursor
            return done
        if piece.epoch != record.epoch:
            done.status = "stood_down"  # queued before a resume: the resume's own piece has the segment
            return done
        now = self._clock.now()
        wait = self._until_start(record)
        if wait > timedelta(0):
            done.status = "waiting"
            done.follow.append((piece, wait))
            self._queue(done.follow)
            return done
        if piece.fan_out:
            done.status = "fanned_out"
            done.follow.extend((segment, timedelta(0)) for segment in self._first_pieces(record))
            if record.campaign.ab_test is not None:
                done.follow.append(self._decide_piece(record))
            self._queue(done.follow)
            return done
        if piece.decide:
            return self._decide(record, piece, done)
        if piece.rest and record.winner is None:
            raise BadCampaignPiece(f"a rest piece of {piece.campaign_id} before its winner")
        if record.status is CampaignStatus.SCHEDULED:
            sending = self._mark_sending(record, piece)
            if sending is None:
                done.status = "stood_down"  # a pause or cancel landed between the read and the write
                return done
            record = sending
        logged = self._log.pieces_of(document_name(piece.campaign_id))
        previous = logged.get(piece.key, {})
        origin = position_of(piece.cursor)
        # A retry of this piece (a crash, a fault, a redrive) resumes from its last checkpoint, not from the
        # start of its share: the checkpoint holds what it had handed off and the pace it was given.
        resumed = previous.get("resume") if previous.get("origin") == origin else None
        if resumed is not None:
            resumed = {k: int(v) for k, v in resumed.items()}
        elif previous.get("origin") == origin and previous.get("epoch") == piece.epoch:
            # This piece finished before (its record is written). If it died before its continuation was
            # queued (the record says `queued` once it is), queue it now, starting nothing; else it is a copy
            # (SQS at-least-once, a repeated fan-out) and stands down, so a segment keeps one chain.
            done.done = bool(previous.get("done"))
            if done.done:
                self._finish_if_complete(piece)
            elif previous.get("queued"):
                done.status = "stood_down"
            else:
                done.follow.append((replace(piece, cursor=previous.get("cursor")), PACE))
                self._queue(done.follow)
                self._mark_queued(piece, previous, origin)
            return done
        # The segments still going share the minute: the last ones to finish take the finished ones' part.
        finished = sum(1 for key, e in logged.items() if e.get("done") and key.startswith("rest-") == piece.rest)
        used = self._flows_used()
        if resumed is not None:
            batch, backlog = resumed["batch"], float(previous.get("backlog", 0.0))
        else:
            campaigns, own = self._sharing(piece, now)
            going = max(1, piece.of - finished)
            batch, backlog = pace(previous, used, now, self._per_minute, piece, going, campaigns=campaigns, own=own)
        cursor: dict[str, Any] | None = previous.get("cursor") if resumed is not None else piece.cursor
        campaign = record.campaign
        channels = [c for c, on in ((Channel.EMAIL, campaign.email), (Channel.SMS, campaign.sms)) if on]
        group_of = campaign.grouping()
        prior = self._prior() if campaign.schedule.best_time is True else None

        first_step = campaign.as_flow().first_step_id

        def run_of(contact: Contact, due: datetime) -> Run:
            return _spread(campaign.recipient_run(contact, self._zone, now, prior, first_step, rest=piece.rest), due)

        # Counts and pace as the segment's record stood before this piece (a checkpoint keeps them).
        before = previous.get("before", previous) if resumed is not None else previous
        offset = resumed or {"started": 0, "paced": 0}

        def entry(finished_segment: bool, at_cursor: dict[str, Any] | None, paced: int) -> dict[str, Any]:
            totals = {
                name: int(previous.get(name, 0)) + getattr(done, name)
                for name in ("contacts", "started", "existing", "unreachable", "holdout", "later")
            }
            return {
                "done": finished_segment,
                "cursor": at_cursor if not finished_segment else None,
                "epoch": piece.epoch,
                "origin": origin,
                **totals,
                # what the segment's next piece measures the last minute by (`pace`)
                "slots_used": list(used) if resumed is None else before.get("slots_used"),
                "slots_at": now.isoformat() if resumed is None else before.get("slots_at"),
                "backlog": backlog,
                "last_started": offset["paced"] + paced,
            }

        # The segments' pieces run at about the same moment: each offsets its spread by its part of one gap,
        # so their sends interleave instead of falling due together (a burst the spare slots turn away).
        # (another campaign's pieces at the same moment land at a hashed place between them)
        lane = int(hashlib.sha256(piece.campaign_id.encode()).hexdigest()[:8], 16) % 1000 / 1000
        stagger = (piece.segment + lane) / piece.of
        handing: list[Run] = []  # started, their first wake-ups not queued yet: ten a SendMessageBatch

        def hand_off() -> None:
            if handing:
                self._runs.redrive_all(handing)
                handing.clear()

        def checkpoint(at_cursor: dict[str, Any] | None, paced: int) -> None:
            """Where the piece stands, every CHECKPOINT_EVERY contacts: a retry resumes from here."""
            hand_off()  # the checkpoint says these runs are handed off
            state = entry(False, at_cursor, paced)
            state |= {
                "origin": origin,
                "before": {k: before.get(k) for k in ("slots_used", "slots_at", "last_started") if k in before},
                "resume": {"batch": batch, "started": offset["started"] + done.started, "paced": state["last_started"]},
            }
            self._log.record_piece(
                document_name(piece.campaign_id),
                piece.key,
                state,
                self._clock.now(),
                origin=origin,
                position=position_of(at_cursor),
            )

        done.done = True
        paced = 0
        scanned = 0
        try:
            for contact, after in self._census.contacts_segment(piece.segment, piece.of, cursor):
                done.contacts += 1
                scanned += 1
                cursor = after
                if campaign.audience.matches(contact):
                    group = group_of(contact.contact_id)
                    if campaign.waits_for_winner(group) != piece.rest:
                        done.later += not piece.rest  # the rest's own pieces start it once the winner is chosen
                    elif not _reachable(contact, channels):
                        done.unreachable += not piece.rest
                    elif self._runs.start(
                        engine.StartRun(
                            run := run_of(contact, now + PACE * (offset["started"] + done.started + stagger) / batch),
                            None,
                        ),
                        redrive_existing=True,
                        later=handing,
                    ):
                        done.started += 1
                        done.holdout += group == HOLDOUT
                        # what will ask for a spare slot within the minute (not the holdout, not a later local time)
                        paced += group != HOLDOUT and run.due_at is not None and run.due_at <= now + PACE
                    else:
                        done.existing += 1
                if after is None:
                    break
                if offset["started"] + done.started >= batch or (
                    deadline is not None and self._clock.now() >= deadline
                ):
                    done.done = False
                    elapsed = self._clock.now() - now
                    done.follow.append((replace(piece, cursor=after), max(PACE - elapsed, timedelta(0))))
                    break
                if len(handing) >= HAND_OFF_BATCH:
                    hand_off()
                if scanned % CHECKPOINT_EVERY == 0:
                    checkpoint(after, paced)
            hand_off()
            final = entry(done.done, cursor, paced)
            self._log.record_piece(
                document_name(piece.campaign_id),
                piece.key,
                final,
                self._clock.now(),
                origin=origin,
                position=position_of(None if done.done else cursor, done=done.done),
            )
            # What the other campaigns' pieces read to share the rate (`_sharing`): this segment's last start.
            self._log.record_piece(
                ACTIVE_LOG,
                f"{piece.campaign_id}#{piece.key}",
                {"at": now.isoformat(), "started": offset["paced"] + paced},
                self._clock.now(),
            )
        except ConflictError:
            # The segment's record moved on from where this piece started: it is a stale copy (a redelivery
            # after its continuation ran, a replayed fan-out). The chain that moved it has the segment.
            done.status = "stood_down"
            done.follow.clear()
            return done
        if done.done:
            self._finish_if_complete(piece)
        self._queue(done.follow)
        if done.follow:
            self._mark_queued(piece, final, origin)
        return done

    def _mark_queued(self, piece: CampaignPiece, record: Mapping[str, Any], origin: str) -> None:
        """The piece's continuation is on the queue: a copy of the piece that comes later stands down."""
        with contextlib.suppress(ConflictError):  # the continuation already moved the record on: nothing to mark
            self._log.record_piece(
                document_name(piece.campaign_id),
                piece.key,
                {**record, "queued": True},
                self._clock.now(),
                origin=origin,
                position=position_of(record.get("cursor")),
            )

    def run(self, campaign: Campaign) -> CampaignRecord:
        """Create the campaign and do its pieces in this process, one after another, moving no clock
        (tests, `nudge bench`): each piece's continuation is done at once instead of a minute later."""
        jobs, self._jobs = self._jobs, None
        try:
            record, _ = self.create(campaign)
            pieces = [self._fan_out(record)]
            while pieces:
                piece = pieces.pop(0)
                outcome = self.work(piece)
                pieces.extend(follow for follow, _ in outcome.follow if outcome.status in ("worked", "fanned_out"))
        finally:
            self._jobs = jobs
        found = self.get(campaign.id)
        assert found is not None
        return found

    # helpers -----------------------------------------------------------------------------------------------

    def _fan_out(self, record: CampaignRecord) -> CampaignPiece:
        return CampaignPiece(record.campaign.id, 0, self._segments, record.epoch, fan_out=True)

    def _first_pieces(self, record: CampaignRecord) -> list[CampaignPiece]:
        return [CampaignPiece(record.campaign.id, s, self._segments, record.epoch) for s in range(self._segments)]

    def _unfinished(self, record: CampaignRecord) -> list[CampaignPiece]:
        """What resume queues: each segment not done, from its cursor; with an A/B test, the decision if it
        is not made, else the rest's segments not done."""
        logged = self._log.pieces_of(document_name(record.campaign.id))
        pieces = []
        first = self._first_pieces(record)
        if record.campaign.ab_test is not None and record.winner is None:
            pieces.append(self._decide_piece(record)[0])
        elif record.winner is not None:
            first += [replace(piece, rest=True) for piece in first]
        for piece in first:
            entry = logged.get(piece.key, {})
            if not entry.get("done"):
                pieces.append(replace(piece, cursor=entry.get("cursor")))
        return pieces

    def _decide_piece(self, record: CampaignRecord) -> tuple[CampaignPiece, timedelta]:
        due = record.campaign.decide_at(record.created_at) or self._clock.now()
        delay = min(max(due - self._clock.now(), timedelta(0)), MAX_JOB_DELAY)
        return CampaignPiece(record.campaign.id, 0, self._segments, record.epoch, decide=True), delay

    def _decide(self, record: CampaignRecord, piece: CampaignPiece, done: CampaignPieceOutcome) -> CampaignPieceOutcome:
        """After the A/B test's wait: choose the winner from the variants' counters, write it with the
        status (conditionally), and queue the rest's pieces a minute later, once every worker's cached view
        of the campaign (STATUS_TTL) has the winner. Done again (at-least-once), it finds the winner and
        queues only the rest's segments not done, from their cursors: their runs' ids make a second chain
        start nothing twice."""
        test = record.campaign.ab_test
        assert test is not None
        if record.winner is None:
            again = self._decide_piece(record)
            if again[1] > timedelta(0):
                done.status = "waiting"
                done.follow.append(again)
                self._queue(done.follow)
                return done
            verdict = choose_winner(test, self._counts(record.campaign.flow_id))
            try:
                record = self._save(replace(record, ab_verdict=verdict, updated_at=self._clock.now()))
            except ConflictError:
                found = self.get(piece.campaign_id)  # a pause or resume won: decide again on what it wrote
                if found is None or not found.status.sends or found.epoch != piece.epoch or found.winner is None:
                    done.status = "stood_down"
                    return done
                record = found
            log.info("campaign winner", extra={"campaign": piece.campaign_id, "verdict": verdict})
        done.status = "decided"
        done.follow.extend((p, PACE) for p in self._unfinished(record) if p.rest)
        self._queue(done.follow)
        return done

    def _mark_sending(self, record: CampaignRecord, piece: CampaignPiece) -> CampaignRecord | None:
        """scheduled -> sending, conditionally; None if what won meanwhile says the piece stands down."""
        found: CampaignRecord | None = record
        for _ in range(WRITE_ATTEMPTS):
            if found is None or not found.status.sends or found.epoch != piece.epoch:
                return None
            if found.status is not CampaignStatus.SCHEDULED:
                return found  # another piece marked it sending
            try:
                return self._save(replace(found, status=CampaignStatus.SENDING, updated_at=self._clock.now()))
            except ConflictError:
                found = self.get(piece.campaign_id)
        raise ConflictError(f"campaign {piece.campaign_id} kept changing")  # SQS retries the piece

    def _finish_if_complete(self, piece: CampaignPiece) -> None:
        """sending -> sent once every segment is done, conditionally: a pause or cancel that landed after
        this piece read the status stays (the write loses, and the status read again is not `sending`)."""
        logged = self._log.pieces_of(document_name(piece.campaign_id))
        if (
            sum(1 for key, entry in logged.items() if entry.get("done") and key.startswith("rest-") == piece.rest)
            < piece.of
        ):
            return
        for _ in range(WRITE_ATTEMPTS):
            record = self.get(piece.campaign_id)
            if record is None or record.status is not CampaignStatus.SENDING:
                return
            if record.campaign.ab_test is not None and not piece.rest:
                return  # an A/B campaign is sent once the rest's pieces are done
            try:
                self._save(replace(record, status=CampaignStatus.SENT, updated_at=self._clock.now()))
                return
            except ConflictError:
                continue
        raise ConflictError(f"campaign {piece.campaign_id} kept changing")

    def _sharing(self, piece: CampaignPiece, now: datetime) -> tuple[int, float]:
        """How many campaigns are sending now (their pieces ran within two minutes, this one included), and
        this campaign's part of the runs they started for their last minute: the rate's spare slots are
        counted for all campaigns together, so each reads its own sends as that part of them (ADR 0019)."""
        recent: dict[str, int] = {}
        for key, beat in self._log.pieces_of(ACTIVE_LOG).items():
            at = beat.get("at")
            if isinstance(at, str) and now - datetime.fromisoformat(at) <= 2 * PACE:
                campaign = key.partition("#")[0]
                recent[campaign] = recent.get(campaign, 0) + int(beat.get("started", 0))
        total = sum(recent.values())
        own = recent.get(piece.campaign_id, 0) / total if total else 1.0
        return len(recent.keys() | {piece.campaign_id}), own

    def _prior(self) -> list[float]:
        """What best-time sends shrink each contact's history toward: the shop's curve (the daily job)."""
        return send_time.ShopCurve.from_record(self._documents.get_document(send_time.CURVE_DOCUMENT)).prior()

    def _until_start(self, record: CampaignRecord) -> timedelta:
        now = self._clock.now()
        return min(max(record.campaign.schedule.starts_at(now) - now, timedelta(0)), MAX_JOB_DELAY)

    def _save(self, record: CampaignRecord) -> CampaignRecord:
        """Write the record if its document is still at the version it was read at (ConflictError if not)."""
        name = document_name(record.campaign.id)
        version = self._documents.put_versioned_document(name, record.to_document(), self._clock.now(), record.version)
        if self._catalog is not None:
            self._catalog.forget(record.campaign.id)  # this process sees its own change at once
        return replace(record, version=version)

    def _queue(self, pieces: list[tuple[CampaignPiece, timedelta]]) -> None:
        if not pieces or self._jobs is None:
            return
        by_delay: dict[timedelta, list[dict[str, Any]]] = {}
        for piece, delay in pieces:
            by_delay.setdefault(delay, []).append(piece.as_payload())
        for delay, bodies in by_delay.items():
            self._jobs.put(bodies, delay=delay)


def position_of(cursor: Mapping[str, Any] | None, *, done: bool = False) -> str:
    """A short name for a place in a segment (its Scan cursor): what a piece's record is conditional on."""
    if done:
        return "done"
    if cursor is None:
        return "start"
    return hashlib.sha256(json.dumps(cursor, sort_keys=True, default=str).encode()).hexdigest()[:20]


def minute_budget(per_minute: int, flows_last_minute: float) -> int:
    """How many runs a campaign starts in the next minute: the minute of SES rate less what flows used in the
    last one (at least their reserve), never below the floor (its sends wait for spare slots anyway)."""
    reserve = max(per_minute * FLOW_RESERVE, flows_last_minute)
    return max(1, int(per_minute * MIN_SHARE), int(per_minute - reserve))


def segment_share(budget: int, piece: CampaignPiece, going: int) -> int:
    """A segment's piece of the minute's budget, shared by the `going` segments not finished."""
    return max(1, budget // going + (piece.segment % going < budget % going))


def pace(
    previous: Mapping[str, Any],
    used: tuple[int, int],
    now: datetime,
    per_minute: int,
    piece: CampaignPiece,
    going: int,
    *,
    campaigns: int = 1,
    own: float = 1.0,
) -> tuple[int, float]:
    """How many runs the segment's piece starts now, and the segment's backlog: (batch, backlog).

    From the send throttle's counts (`used`: flows' slots, campaigns' spare slots, ever) against the
    segment's last piece's: flows' rate over the last minute sets the minute's budget (`minute_budget`),
    and the sends the segment's last piece started for that minute (`last_started`: not the holdout, not a
    later local time) less its share of the spare slots taken since is what it still has waiting (flows
    took more than they left, or a burst), started less this time. Only the last minute's: recipients the
    worker skips (suppressed, smart sending) never take a slot, and counted for good they would slow the
    campaign for good; counted for a minute, 5 % skipped slow it about 5 %. `going` segments are not
    finished: they share the budget and the spare slots. The first piece, or one with no time since the
    last (`CampaignService.run`, which moves no clock), has nothing to measure: the reserve applies.
    `campaigns` sending at once split the budget evenly, and each reads `own` (its part of the runs they
    all started for their last minute) of the spare slots taken as its own sends: without that, each took
    the whole budget and together they started twice what the rate sends (the rest looked again and again).
    """
    flows_minute, backlog = 0.0, 0.0
    before, at = previous.get("slots_used"), previous.get("slots_at")
    seconds = (now - datetime.fromisoformat(str(at))).total_seconds() if at else 0.0
    if isinstance(before, list) and len(before) == 2 and seconds > 0:
        flows_minute = max(0, used[0] - int(before[0])) * 60 / seconds
        sent = max(0, used[1] - int(before[1])) * own / going
        backlog = max(0.0, int(previous.get("last_started", 0)) - sent)
    share = segment_share(max(1, minute_budget(per_minute, flows_minute) // max(1, campaigns)), piece, going)
    return max(1, int(share - backlog)), backlog


def _spread(run: Run, due: datetime) -> Run:
    """Due no sooner than `due`: a piece's runs come due spread over its minute, so the campaign's sends
    reach the worker at the pace of the spare slots, not in a burst (a later local time stays)."""
    return run if run.due_at is not None and run.due_at >= due else replace(run, due_at=due)


def _reachable(contact: Contact, channels: list[Channel]) -> bool:
    """Consent and an address on at least one of the campaign's channels (the worker checks again)."""
    return any(engine.consent_problem(contact, channel, Category.MARKETING) is None for channel in channels)

"""Use case: the daily job. Segment reviews, RFM scores against the whole customer base, co-purchases.

Runs once a day (the sweep function, 04:00 UTC). Everything here is safe to run twice: a review or a
rescore that changes nothing writes nothing, and the documents it stores are replaced, not added to.
See docs/adr/0005-segments.md (reviews, RFM) and docs/adr/0006-recommendations.md (co-purchases).
"""

from __future__ import annotations

import logging
from array import array
from dataclasses import dataclass, field

from nudge.domain import predictions
from nudge.domain.lifecycle import RfmCuts, RfmInputs, cuts_of, score
from nudge.ports import Census, Clock, Documents
from nudge.services.ingest import IngestOutcome, IngestService
from nudge.services.recommendations import CoPurchaseBook

log = logging.getLogger(__name__)

RFM_DOCUMENT = "rfm_cuts"
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
    reviews: list[IngestOutcome]
    rfm: RescoreOutcome
    copurchase_orders: int = 0  # orders behind the recommendations table
    products: int = 0

    def as_dict(self) -> dict[str, object]:
        moved = self.reviews + self.rfm.outcomes
        return {
            "reviewed": len(self.reviews),
            "started": sum(len(o.started) for o in moved),
            "exited": sum(len(o.exited) for o in moved),
            "buyers": self.rfm.buyers,
            "rescored": self.rfm.rescored,
            "predicted": self.rfm.predicted,
            "copurchase_orders": self.copurchase_orders,
            "products": self.products,
        }


class DailyJob:
    def __init__(
        self,
        *,
        ingest: IngestService,
        census: Census,
        documents: Documents,
        clock: Clock,
        copurchases: CoPurchaseBook,
    ) -> None:
        self._ingest = ingest
        self.copurchases = copurchases
        self._census = census
        self._documents = documents
        self._clock = clock
        self.requirements = predictions.REQUIREMENTS  # what the base needs before predictions (ADR 0018)

    def run(self) -> DailyOutcome:
        reviews = self._ingest.sweep()
        rfm = self.rescore()
        table = self.copurchases.recompute()
        return DailyOutcome(reviews=reviews, rfm=rfm, copurchase_orders=table.orders, products=len(table.products))

    def rescore(self) -> RescoreOutcome:
        """Cut the customer base into RFM quintiles, store the cuts, and write each score that changed.

        Two passes over the contacts table: the first keeps three floats per buyer (24 MB at 1M buyers),
        the second scores each contact against the cuts and writes only the ones that moved, through the
        ingest service, so that a segment on `rfm.*` is entered or left like any other.
        """
        now = self._clock.now()
        recency, orders, spent = array("d"), array("d"), array("d")
        summaries = predictions.SummaryColumns()
        for contact in self._census.all_contacts():
            if (inputs := RfmInputs.of(contact.aggregates, now)) is not None:
                recency.append(inputs.recency_days)
                orders.append(inputs.orders)
                spent.append(inputs.spent)
            if (summary := predictions.BuyerSummary.of(contact.aggregates, now)) is not None:
                summaries.append(summary)
        cuts = cuts_of(recency, orders, spent)
        model = predictions.fit(summaries, self.requirements)
        found = RescoreOutcome(buyers=len(recency), cuts=cuts, model=model)
        if cuts is not None:
            self._documents.put_document(RFM_DOCUMENT, {**cuts.to_record(), "computed_at": now.isoformat()}, now)
        self._documents.put_document(PREDICTIONS_DOCUMENT, {**model.to_record(), "computed_at": now.isoformat()}, now)
        for contact in self._census.all_contacts():
            inputs = RfmInputs.of(contact.aggregates, now)
            new = score(inputs, cuts) if inputs is not None and cuts is not None else None
            summary = predictions.BuyerSummary.of(contact.aggregates, now)
            predicted = predictions.predict(model, summary, now) if summary is not None else None
            moved = predicted != contact.predicted and not (predicted and predicted.close_to(contact.predicted, now))
            if new != contact.rfm or moved:
                found.outcomes.append(self._ingest.rescore(contact.contact_id, new, predicted))
                found.rescored += new != contact.rfm
                found.predicted += moved
        log.info(
            "rfm rescored",
            extra={"buyers": found.buyers, "rescored": found.rescored, "predicted": found.predicted},
        )
        return found

    def predictions_model(self) -> predictions.Model | None:
        """The model the last run fitted, or why there is none (for reports); None before the first run."""
        record = self._documents.get_document(PREDICTIONS_DOCUMENT)
        return predictions.Model.from_record(record) if record else None

    def rfm_cuts(self) -> RfmCuts | None:
        """The cut points the last run stored (for reports), or None before the first run."""
        record = self._documents.get_document(RFM_DOCUMENT)
        return RfmCuts.from_record(record) if record else None

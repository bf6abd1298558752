"""Use case: the KPI report of every flow, step and split variant, from whatever store holds them."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from nudge.domain import kpis, predictions, send_time
from nudge.domain.campaigns import campaign_id_of
from nudge.ports import ReportReader
from nudge.services.campaigns import document_name


def build_report(
    reader: ReportReader, window: timedelta = kpis.DEFAULT_WINDOW, model: predictions.Model | None = None
) -> kpis.Report:
    """Runs, message facts and retained orders, attributed last-touch within `window`; CLV from the contacts.

    `model` is the daily job's last (`DailyJob.predictions_model`): with it the report sums up the predictions
    (without it, the report has no `outlook`).
    """
    messages = (kpis.MessageFacts.of(m) for m in reader.all_messages())
    spend, predicted = {}, []
    for contact in reader.all_contacts():
        spend[contact.contact_id] = contact.aggregates.total_spent
        if contact.aggregates.orders_count > 0:
            predicted.append(contact.predicted)
    found = kpis.report(reader.all_runs(), messages, reader.orders(), window, spend)
    curve = reader.get_document(send_time.CURVE_DOCUMENT)  # what best-time sends shrink toward
    campaigns = {
        row.flow_id: document
        for row in found.flows
        if (campaign_id := campaign_id_of(row.flow_id)) is not None
        and (document := reader.get_document(document_name(campaign_id))) is not None
    }
    return replace(
        found,
        campaigns=campaigns,
        outlook=predictions.outlook(predicted, model) if model is not None else None,
        send_time=send_time.ShopCurve.from_record(curve) if curve is not None else None,
    )

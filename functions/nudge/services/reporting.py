"""Use case: the KPI report of every flow, step and split variant, from whatever store holds them."""

from __future__ import annotations

from datetime import timedelta

from nudge.domain import kpis
from nudge.ports import ReportReader


def build_report(reader: ReportReader, window: timedelta = kpis.DEFAULT_WINDOW) -> kpis.Report:
    """Runs, message facts and retained orders, attributed last-touch within `window`; CLV from the contacts."""
    messages = (kpis.MessageFacts.of(m) for m in reader.all_messages())
    spend = {c.contact_id: c.aggregates.total_spent for c in reader.all_contacts()}
    return kpis.report(reader.all_runs(), messages, reader.orders(), window, spend)

"""Reading campaigns/*.yaml into Campaign models, checked like flows: file:line errors, templates, segments."""

from __future__ import annotations

from pathlib import Path

from nudge.domain.campaigns import Campaign
from nudge.domain.segments import SegmentCatalog
from nudge.flow_files import FlowFileError, _load_all, _load_model, template_problems
from nudge.templating import TemplateRenderer

CAMPAIGN_SHAPE = "a campaign file holds one mapping (id, name, audience, email and/or sms, schedule)"


def load_campaign(path: Path) -> Campaign:
    """One campaign file; FlowFileError lists each problem as `file:line: field: message`."""
    return _load_model(path, Campaign, CAMPAIGN_SHAPE)


def load_campaigns(directory: Path) -> list[Campaign]:
    """Every *.yaml under `directory` (none if it does not exist); all problems reported together."""
    if not directory.is_dir():
        return []

    def distinct(campaigns: list[Campaign]) -> list[Campaign]:
        seen: set[str] = set()
        for campaign in campaigns:
            if campaign.id in seen:
                raise ValueError(f"two campaigns share the id {campaign.id!r}")
            seen.add(campaign.id)
        return campaigns

    return _load_all(directory, load_campaign, distinct)


def campaign_problems(campaign: Campaign, renderer: TemplateRenderer, segments: SegmentCatalog) -> list[str]:
    """What `nudge validate` and the API refuse beyond the schema: templates that do not exist or compile
    (the same checks as a flow's email and SMS steps), and audience segments that do not exist."""
    problems = [
        problem.replace("steps.email", "email", 1).replace("steps.sms", "sms", 1)
        for problem in template_problems(campaign.as_flow(), renderer)
    ]
    known = segments.ids()
    audience = campaign.audience
    named = [("audience.segments", audience.segments), ("audience.exclude_segments", audience.exclude_segments)]
    for where, ids in named:
        listed = ", ".join(sorted(known))
        problems += [f"{where}: no segment {name!r} (known: {listed})" for name in ids if name not in known]
    return problems


__all__ = ["FlowFileError", "campaign_problems", "load_campaign", "load_campaigns"]

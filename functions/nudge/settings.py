"""Runtime settings: one frozen dataclass, read and checked once at cold start from the environment.

A plain dataclass, not a pydantic model: every function reads its settings at a cold start, and a pydantic
model there costs pydantic's import and one validator build (ADR 0020, Decision 9). The checks are the ones
the model had (required values, lengths, patterns, ranges), and a bad environment still fails with one
SettingsError naming every variable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import field, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from nudge import names
from nudge.domain.frozen import dataclass


class SettingsError(RuntimeError):
    """The environment does not describe a usable deployment; the message lists every problem."""


# The checks the pydantic model made: a minimum length, a pattern (when set), a range (numbers from text).
_LENGTHS = {"work_queue_url": 1, "work_queue_arn": 1, "scheduler_role_arn": 1, "from_address": 3}
_PATTERNS = {
    "unsubscribe_base_url": r"^https://",
    "unsubscribe_mailto": r"^[^@\s:?]+@[^@\s]+$",
    "whatsapp_phone_number_id": names.WHATSAPP_PHONE_NUMBER_ID_PATTERN,
    "whatsapp_meta_api_version": r"^v\d+\.\d+$",
}
_RANGES = {"ses_max_send_rate": (1, 10_000), "event_retention_days": (1, 3650)}
_PATHS = ("flows_dir", "templates_dir", "segments_dir", "audiences_dir")


class _Invalid(ValueError):
    """The problems of one construction, as (field, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{name}: {message}" for name, message in problems))
        self.problems = problems


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything a handler needs to find its resources. Names match infra/ through nudge.names."""

    contacts_table: str = names.CONTACTS_TABLE
    events_table: str = names.EVENTS_TABLE
    runs_table: str = names.RUNS_TABLE
    messages_table: str = names.MESSAGES_TABLE
    keys_table: str = names.KEYS_TABLE
    contact_refs_table: str = names.CONTACT_REFS_TABLE
    privacy_table: str = names.PRIVACY_TABLE
    schedule_group: str = names.SCHEDULE_GROUP
    work_queue_url: str
    work_queue_arn: str  # what one-time schedules target
    jobs_queue_url: str | None = None  # pieces of the daily job, campaigns and shop disconnects
    campaigns_queue_url: str | None = None  # campaigns' pieces (else the jobs queue): quick retries
    scheduler_role_arn: str
    scheduler_dlq_arn: str | None = None
    from_address: str
    ses_configuration_set: str | None = None
    flows_dir: Path = Path(names.BUNDLED_FLOWS_DIR)
    templates_dir: Path = Path(names.BUNDLED_TEMPLATES_DIR)
    segments_dir: Path | None = None  # default: segments/ beside flows_dir
    audiences_dir: Path | None = None  # default: audiences/ beside flows_dir (ADR 0024)
    # A JSON secret {"meta": {...}, "google": {...}, "tiktok": {...}}: the ad platforms' tokens (docs/audiences.md).
    audience_secrets_arn: str | None = None
    # Only for local runs and tests, like signing_key.
    audience_secrets: dict[str, dict[str, str]] | None = None
    default_timezone: str = "UTC"
    signing_secret_arn: str | None = None
    # Only for local runs and tests: the signing key itself. Deployed stacks use signing_secret_arn.
    signing_key: str | None = None
    webhook_secrets_arn: str | None = None
    # Only for local runs and tests, like signing_key: {"shopify": {domain: secret}, "woocommerce": {host: secret}}.
    webhook_secrets: dict[str, dict[str, str]] | None = None
    public_base_url: str | None = None
    suppressions_table: str = names.SUPPRESSIONS_TABLE
    counters_table: str = names.COUNTERS_TABLE
    unsubscribe_secret_arn: str | None = None
    # Only for local runs and tests, like signing_key.
    unsubscribe_key: str | None = None
    unsubscribe_base_url: str | None = None
    unsubscribe_mailto: str | None = None
    postal_address: str | None = None
    utm_params: dict[str, str] = field(default_factory=lambda: {"utm_source": "nudge", "utm_medium": "email"})
    ses_max_send_rate: int = 14
    event_retention_days: int = 90
    # The HELP reply; None: the default, which names the shop (brand.yaml) and its support contact.
    sms_help_text: str | None = None
    # AWS End User Messaging Social's id of the WhatsApp number to send from; None: WhatsApp steps fail.
    whatsapp_phone_number_id: str | None = None
    whatsapp_meta_api_version: str = "v20.0"

    def __post_init__(self) -> None:
        problems: list[tuple[str, str]] = []
        if isinstance(self.utm_params, str):  # a query string, as the environment gives it
            object.__setattr__(self, "utm_params", dict(parse_qsl(self.utm_params)))
        for name in _PATHS:
            value = getattr(self, name)
            if isinstance(value, str):
                object.__setattr__(self, name, Path(value))
        for name, (lowest, highest) in _RANGES.items():
            value = getattr(self, name)
            try:
                if isinstance(value, bool) or not isinstance(value, int | str):
                    raise TypeError(value)
                number = int(value)
            except (TypeError, ValueError):
                problems.append((name, "Input should be a valid integer"))
                continue
            object.__setattr__(self, name, number)
            if number < lowest:
                problems.append((name, f"Input should be greater than or equal to {lowest}"))
            elif number > highest:
                problems.append((name, f"Input should be less than or equal to {highest}"))
        for name, shortest in _LENGTHS.items():
            value = getattr(self, name)
            if not isinstance(value, str):
                problems.append((name, "Input should be a valid string"))
            elif len(value) < shortest:
                problems.append((name, f"String should have at least {shortest} character{'s' * (shortest > 1)}"))
        for name, pattern in _PATTERNS.items():
            value = getattr(self, name)
            if value is not None and not (isinstance(value, str) and re.search(pattern, value)):
                problems.append((name, f"String should match pattern '{pattern}'"))
        if problems:
            raise _Invalid(problems)

    def model_copy(self, *, update: Mapping[str, Any] | None = None) -> Settings:
        """A copy with some values changed, checked again (the spelling of the pydantic model this was)."""
        return replace(self, **dict(update or {}))

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Read the NUDGE_* variables; raise SettingsError naming each missing or bad one."""
        mapping = {
            "contacts_table": names.ENV_CONTACTS_TABLE,
            "events_table": names.ENV_EVENTS_TABLE,
            "runs_table": names.ENV_RUNS_TABLE,
            "messages_table": names.ENV_MESSAGES_TABLE,
            "keys_table": names.ENV_KEYS_TABLE,
            "contact_refs_table": names.ENV_CONTACT_REFS_TABLE,
            "privacy_table": names.ENV_PRIVACY_TABLE,
            "schedule_group": names.ENV_SCHEDULE_GROUP,
            "work_queue_url": names.ENV_WORK_QUEUE_URL,
            "work_queue_arn": names.ENV_WORK_QUEUE_ARN,
            "jobs_queue_url": names.ENV_JOBS_QUEUE_URL,
            "campaigns_queue_url": names.ENV_CAMPAIGNS_QUEUE_URL,
            "scheduler_role_arn": names.ENV_SCHEDULER_ROLE_ARN,
            "scheduler_dlq_arn": names.ENV_SCHEDULER_DLQ_ARN,
            "from_address": names.ENV_FROM_ADDRESS,
            "ses_configuration_set": names.ENV_SES_CONFIGURATION_SET,
            "flows_dir": names.ENV_FLOWS_DIR,
            "templates_dir": names.ENV_TEMPLATES_DIR,
            "segments_dir": names.ENV_SEGMENTS_DIR,
            "audiences_dir": names.ENV_AUDIENCES_DIR,
            "audience_secrets_arn": names.ENV_AUDIENCE_SECRETS_ARN,
            "default_timezone": names.ENV_DEFAULT_TIMEZONE,
            "signing_secret_arn": names.ENV_SIGNING_SECRET_ARN,
            "webhook_secrets_arn": names.ENV_WEBHOOK_SECRETS_ARN,
            "public_base_url": names.ENV_PUBLIC_BASE_URL,
            "suppressions_table": names.ENV_SUPPRESSIONS_TABLE,
            "counters_table": names.ENV_COUNTERS_TABLE,
            "unsubscribe_secret_arn": names.ENV_UNSUBSCRIBE_SECRET_ARN,
            "unsubscribe_base_url": names.ENV_UNSUBSCRIBE_BASE_URL,
            "unsubscribe_mailto": names.ENV_UNSUBSCRIBE_MAILTO,
            "postal_address": names.ENV_POSTAL_ADDRESS,
            "utm_params": names.ENV_UTM_PARAMS,
            "ses_max_send_rate": names.ENV_SES_MAX_SEND_RATE,
            "event_retention_days": names.ENV_EVENT_RETENTION_DAYS,
            "sms_help_text": names.ENV_SMS_HELP_TEXT,
            "whatsapp_phone_number_id": names.ENV_WHATSAPP_PHONE_NUMBER_ID,
            "whatsapp_meta_api_version": names.ENV_WHATSAPP_META_API_VERSION,
        }
        values: dict[str, Any] = {field: environ[var] for field, var in mapping.items() if environ.get(var)}
        if names.ENV_UTM_PARAMS in environ:  # set but empty means: no UTM tagging
            values["utm_params"] = environ[names.ENV_UTM_PARAMS]
        try:  # a required value that is not set is checked as an empty one, and named "Field required"
            return cls(**{**dict.fromkeys(_LENGTHS, ""), **values})
        except _Invalid as exc:
            problems = "; ".join(
                f"{mapping.get(name, name)}: {'Field required' if name not in values else message}"
                for name, message in exc.problems
            )
            raise SettingsError(f"invalid nudge settings: {problems}") from exc

    @property
    def segments_path(self) -> Path:
        return self.segments_dir or self.flows_dir.parent / "segments"

    @property
    def audiences_path(self) -> Path:
        return self.audiences_dir or self.flows_dir.parent / "audiences"

"""Runtime settings: one pydantic model, validated once at cold start from the environment."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from urllib.parse import parse_qsl

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from nudge import names


class SettingsError(RuntimeError):
    """The environment does not describe a usable deployment; the message lists every problem."""


class Settings(BaseModel):
    """Everything a handler needs to find its resources. Names match infra/ through nudge.names."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    contacts_table: str = names.CONTACTS_TABLE
    events_table: str = names.EVENTS_TABLE
    runs_table: str = names.RUNS_TABLE
    messages_table: str = names.MESSAGES_TABLE
    keys_table: str = names.KEYS_TABLE
    contact_refs_table: str = names.CONTACT_REFS_TABLE
    privacy_table: str = names.PRIVACY_TABLE
    schedule_group: str = names.SCHEDULE_GROUP
    work_queue_url: str = Field(min_length=1)
    work_queue_arn: str = Field(min_length=1)  # what one-time schedules target
    jobs_queue_url: str | None = None  # pieces of the daily job, campaigns and shop disconnects
    campaigns_queue_url: str | None = None  # campaigns' pieces (else the jobs queue): quick retries
    scheduler_role_arn: str = Field(min_length=1)
    scheduler_dlq_arn: str | None = None
    from_address: str = Field(min_length=3)
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
    unsubscribe_base_url: str | None = Field(default=None, pattern=r"^https://")
    unsubscribe_mailto: str | None = Field(default=None, pattern=r"^[^@\s:?]+@[^@\s]+$")
    postal_address: str | None = None
    utm_params: dict[str, str] = Field(default_factory=lambda: {"utm_source": "nudge", "utm_medium": "email"})
    ses_max_send_rate: int = Field(default=14, ge=1, le=10_000)
    event_retention_days: int = Field(default=90, ge=1, le=3650)
    # The HELP reply; None: the default, which names the shop (brand.yaml) and its support contact.
    sms_help_text: str | None = None
    # AWS End User Messaging Social's id of the WhatsApp number to send from; None: WhatsApp steps fail.
    whatsapp_phone_number_id: str | None = Field(default=None, pattern=names.WHATSAPP_PHONE_NUMBER_ID_PATTERN)
    whatsapp_meta_api_version: str = Field(default="v20.0", pattern=r"^v\d+\.\d+$")

    @field_validator("utm_params", mode="before")
    @classmethod
    def _query_string(cls, value: object) -> object:
        return dict(parse_qsl(value)) if isinstance(value, str) else value

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
        values = {field: environ[var] for field, var in mapping.items() if environ.get(var)}
        if names.ENV_UTM_PARAMS in environ:  # set but empty means: no UTM tagging
            values["utm_params"] = environ[names.ENV_UTM_PARAMS]
        try:
            return cls(**values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{mapping.get(str(err['loc'][0]), err['loc'][0])}: {err['msg']}" for err in exc.errors()
            )
            raise SettingsError(f"invalid nudge settings: {problems}") from exc

    @property
    def segments_path(self) -> Path:
        return self.segments_dir or self.flows_dir.parent / "segments"

    @property
    def audiences_path(self) -> Path:
        return self.audiences_dir or self.flows_dir.parent / "audiences"

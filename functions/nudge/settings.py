"""Runtime settings: one pydantic model, validated once at cold start from the environment."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

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
    schedule_group: str = names.SCHEDULE_GROUP
    step_function_arn: str = Field(min_length=1)
    scheduler_role_arn: str = Field(min_length=1)
    scheduler_dlq_arn: str | None = None
    from_address: str = Field(min_length=3)
    ses_configuration_set: str | None = None
    flows_dir: Path = Path(names.BUNDLED_FLOWS_DIR)
    templates_dir: Path = Path(names.BUNDLED_TEMPLATES_DIR)
    segments_dir: Path | None = None  # default: segments/ beside flows_dir
    default_timezone: str = "UTC"
    signing_secret_arn: str | None = None
    # Only for local runs and tests: the signing key itself. Deployed stacks use signing_secret_arn.
    signing_key: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Read the NUDGE_* variables; raise SettingsError naming each missing or bad one."""
        mapping = {
            "contacts_table": names.ENV_CONTACTS_TABLE,
            "events_table": names.ENV_EVENTS_TABLE,
            "runs_table": names.ENV_RUNS_TABLE,
            "messages_table": names.ENV_MESSAGES_TABLE,
            "schedule_group": names.ENV_SCHEDULE_GROUP,
            "step_function_arn": names.ENV_STEP_FUNCTION_ARN,
            "scheduler_role_arn": names.ENV_SCHEDULER_ROLE_ARN,
            "scheduler_dlq_arn": names.ENV_SCHEDULER_DLQ_ARN,
            "from_address": names.ENV_FROM_ADDRESS,
            "ses_configuration_set": names.ENV_SES_CONFIGURATION_SET,
            "flows_dir": names.ENV_FLOWS_DIR,
            "templates_dir": names.ENV_TEMPLATES_DIR,
            "segments_dir": names.ENV_SEGMENTS_DIR,
            "default_timezone": names.ENV_DEFAULT_TIMEZONE,
            "signing_secret_arn": names.ENV_SIGNING_SECRET_ARN,
        }
        values = {field: environ[var] for field, var in mapping.items() if environ.get(var)}
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

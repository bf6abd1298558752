"""Resource and environment-variable names shared by functions/ and infra/: defined once, here."""

from __future__ import annotations

from typing import Final

SERVICE: Final = "nudge"

# Environment variables read by settings.Settings.from_env (and set by infra/ on each function).
ENV_CONTACTS_TABLE: Final = "NUDGE_CONTACTS_TABLE"
ENV_EVENTS_TABLE: Final = "NUDGE_EVENTS_TABLE"
ENV_RUNS_TABLE: Final = "NUDGE_RUNS_TABLE"
ENV_MESSAGES_TABLE: Final = "NUDGE_MESSAGES_TABLE"
ENV_SCHEDULE_GROUP: Final = "NUDGE_SCHEDULE_GROUP"
ENV_STEP_FUNCTION_ARN: Final = "NUDGE_STEP_FUNCTION_ARN"
ENV_SCHEDULER_ROLE_ARN: Final = "NUDGE_SCHEDULER_ROLE_ARN"
ENV_SCHEDULER_DLQ_ARN: Final = "NUDGE_SCHEDULER_DLQ_ARN"
ENV_FROM_ADDRESS: Final = "NUDGE_FROM_ADDRESS"
ENV_SES_CONFIGURATION_SET: Final = "NUDGE_SES_CONFIGURATION_SET"
ENV_FLOWS_DIR: Final = "NUDGE_FLOWS_DIR"
ENV_TEMPLATES_DIR: Final = "NUDGE_TEMPLATES_DIR"
ENV_SEGMENTS_DIR: Final = "NUDGE_SEGMENTS_DIR"
ENV_DEFAULT_TIMEZONE: Final = "NUDGE_DEFAULT_TIMEZONE"
# The ARN of the Secrets Manager secret holding the webhook signing key; never the key itself.
ENV_SIGNING_SECRET_ARN: Final = "NUDGE_SIGNING_SECRET_ARN"

# Default physical names, used locally (moto) and as name prefixes in the stack.
CONTACTS_TABLE: Final = "nudge-contacts"
EVENTS_TABLE: Final = "nudge-events"
RUNS_TABLE: Final = "nudge-runs"
MESSAGES_TABLE: Final = "nudge-messages"
SCHEDULE_GROUP: Final = "nudge-steps"

# Lambda entry points (module:function relative to the functions/ asset).
INGEST_HANDLER: Final = "nudge.handlers.ingest.handler"
STEP_HANDLER: Final = "nudge.handlers.step.handler"

# Where flows/ and templates/ are copied inside the Lambda bundle.
BUNDLED_FLOWS_DIR: Final = "/var/task/flows"
BUNDLED_TEMPLATES_DIR: Final = "/var/task/templates"

# HTTP header carrying the request signature: "t=<unix seconds>,v1=<hex HMAC-SHA256>".
SIGNATURE_HEADER: Final = "X-Nudge-Signature"

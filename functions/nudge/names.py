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
# The worker's SQS queue: functions enqueue work on its URL; Scheduler targets its ARN (ADR 0007).
ENV_WORK_QUEUE_URL: Final = "NUDGE_WORK_QUEUE_URL"
ENV_WORK_QUEUE_ARN: Final = "NUDGE_WORK_QUEUE_ARN"
ENV_JOBS_QUEUE_URL: Final = "NUDGE_JOBS_QUEUE_URL"
ENV_CAMPAIGNS_QUEUE_URL: Final = "NUDGE_CAMPAIGNS_QUEUE_URL"
ENV_SCHEDULER_ROLE_ARN: Final = "NUDGE_SCHEDULER_ROLE_ARN"
ENV_SCHEDULER_DLQ_ARN: Final = "NUDGE_SCHEDULER_DLQ_ARN"
ENV_FROM_ADDRESS: Final = "NUDGE_FROM_ADDRESS"
ENV_SES_CONFIGURATION_SET: Final = "NUDGE_SES_CONFIGURATION_SET"
ENV_FLOWS_DIR: Final = "NUDGE_FLOWS_DIR"
ENV_TEMPLATES_DIR: Final = "NUDGE_TEMPLATES_DIR"
ENV_SEGMENTS_DIR: Final = "NUDGE_SEGMENTS_DIR"
ENV_AUDIENCES_DIR: Final = "NUDGE_AUDIENCES_DIR"
ENV_AUDIENCE_SECRETS_ARN: Final = "NUDGE_AUDIENCE_SECRETS_ARN"
ENV_DEFAULT_TIMEZONE: Final = "NUDGE_DEFAULT_TIMEZONE"
# The ARN of the Secrets Manager secret holding the webhook signing key; never the key itself.
ENV_SIGNING_SECRET_ARN: Final = "NUDGE_SIGNING_SECRET_ARN"
# The ARN of the JSON secret holding storefront webhook secrets: {"shopify": {shop domain: secret},
# "woocommerce": {site host: secret}}.
ENV_WEBHOOK_SECRETS_ARN: Final = "NUDGE_WEBHOOK_SECRETS_ARN"
ENV_KEYS_TABLE: Final = "NUDGE_KEYS_TABLE"
ENV_CONTACT_REFS_TABLE: Final = "NUDGE_CONTACT_REFS_TABLE"
ENV_PRIVACY_TABLE: Final = "NUDGE_PRIVACY_TABLE"
# The API's public base URL (https://…/prod): double opt-in confirmation links point there.
ENV_PUBLIC_BASE_URL: Final = "NUDGE_PUBLIC_BASE_URL"
# Deliverability and compliance (issue #5).
ENV_SUPPRESSIONS_TABLE: Final = "NUDGE_SUPPRESSIONS_TABLE"
ENV_COUNTERS_TABLE: Final = "NUDGE_COUNTERS_TABLE"
# The ARN of the secret holding the unsubscribe-token HMAC key (a Secrets Manager secret).
ENV_UNSUBSCRIBE_SECRET_ARN: Final = "NUDGE_UNSUBSCRIBE_SECRET_ARN"
ENV_UNSUBSCRIBE_BASE_URL: Final = "NUDGE_UNSUBSCRIBE_BASE_URL"  # https://<api>/v1/unsubscribe
ENV_UNSUBSCRIBE_MAILTO: Final = "NUDGE_UNSUBSCRIBE_MAILTO"
ENV_POSTAL_ADDRESS: Final = "NUDGE_POSTAL_ADDRESS"
ENV_UTM_PARAMS: Final = "NUDGE_UTM_PARAMS"  # a query string: utm_source=nudge&utm_medium=email ("" for none)
ENV_SES_MAX_SEND_RATE: Final = "NUDGE_SES_MAX_SEND_RATE"  # sends per second, the account's SES quota
# "true": EMF metrics per flow as well as the service-wide totals (each flow and name is a custom metric).
ENV_PER_FLOW_METRICS: Final = "NUDGE_PER_FLOW_METRICS"
ENV_EVENT_RETENTION_DAYS: Final = "NUDGE_EVENT_RETENTION_DAYS"
ENV_SMS_HELP_TEXT: Final = "NUDGE_SMS_HELP_TEXT"
# AWS End User Messaging Social: the WhatsApp number nudge sends from (unset: no WhatsApp), Meta's API version.
ENV_WHATSAPP_PHONE_NUMBER_ID: Final = "NUDGE_WHATSAPP_PHONE_NUMBER_ID"
ENV_WHATSAPP_META_API_VERSION: Final = "NUDGE_WHATSAPP_META_API_VERSION"
# The id as the service names it (phone-number-id-...), or its ARN (what IAM's Resource names).
WHATSAPP_PHONE_NUMBER_ID_PATTERN: Final = (
    r"^(phone-number-id-[0-9a-zA-Z]+|arn:[^:]+:social-messaging:[^:]*:[0-9]*:phone-number-id/[0-9a-zA-Z]+)$"
)

# Default physical names, used locally (moto) and as name prefixes in the stack.
CONTACTS_TABLE: Final = "nudge-contacts"
EVENTS_TABLE: Final = "nudge-events"
RUNS_TABLE: Final = "nudge-runs"
MESSAGES_TABLE: Final = "nudge-messages"
SCHEDULE_GROUP: Final = "nudge-steps"
KEYS_TABLE: Final = "nudge-keys"  # API keys (hashed) and rate-limit buckets
CONTACT_REFS_TABLE: Final = "nudge-contact-refs"  # outside ids (Shopify order, anonymous id) -> contact
PRIVACY_TABLE: Final = "nudge-privacy-requests"  # data requests and redactions awaiting the erase of #5
SIGNING_SECRET_NAME: Final = "nudge/signing-key"
WEBHOOK_SECRETS_NAME: Final = "nudge/webhook-secrets"
SUPPRESSIONS_TABLE: Final = "nudge-suppressions"
COUNTERS_TABLE: Final = "nudge-counters"
# Global secondary indexes (infra/ creates them with these names).
MESSAGES_BY_PROVIDER_ID_INDEX: Final = "by-provider-id"  # hash key provider_id, projection ALL
# Local (same partition: contact_id), sort key sent_at: sparse, only sent messages; what guardrails read.
MESSAGES_SENT_INDEX: Final = "by-sent-at"
# The daily job's recurring schedule (infra/constructs/scheduling.py; the local pump fires it too).
DAILY_SCHEDULE: Final = "daily-sweep"
DAILY_CRON: Final = "cron(0 4 * * ? *)"
# The worker's queue (ADR 0007): six times the worker's 60 s timeout, as AWS advises for event-source
# mappings; after 12 receives (over an hour of failures) a message goes to the dead-letter queue.
WORK_VISIBILITY_TIMEOUT: Final = 360
WORK_MAX_RECEIVES: Final = 12
# The daily job's queue of pieces (services/daily.py), consumed one at a time by the sweep function: six
# times its 900 s timeout, then the dead-letter queue after 3 receives (a piece that failed for 4.5 hours).
SWEEP_TIMEOUT: Final = 900  # seconds: Lambda's maximum
JOBS_VISIBILITY_TIMEOUT: Final = 6 * SWEEP_TIMEOUT
JOBS_MAX_RECEIVES: Final = 3
# Campaigns' pieces (ADR 0019), on a queue of their own, consumed by the same sweep function. Lambda wants
# a queue's visibility timeout at least the function's timeout; a piece that fails shortens its own to
# CAMPAIGN_RETRY_SECONDS[receives - 1] (ChangeMessageVisibility), so it is retried within a minute, and
# goes to the dead-letter queue after 10 receives (ADR 0019's arithmetic: 0.1 % at 50 % failed attempts).
CAMPAIGNS_VISIBILITY_TIMEOUT: Final = SWEEP_TIMEOUT
CAMPAIGNS_MAX_RECEIVES: Final = 10
CAMPAIGN_RETRY_SECONDS: Final = (10, 20, 40, 60)  # then 60 s each time
# Campaign pieces at once: 8 segments' pieces, the fan-out or decision piece, one spare (ADR 0019).
CAMPAIGN_PIECES_CONCURRENCY: Final = 10
SENT_INDEX_ATTRIBUTES: Final = ("status", "channel", "category", "priority", "flow_id")
EVENTS_BY_CONTACT_INDEX: Final = "by-contact"  # hash key contact_id, projection KEYS_ONLY
CONTACT_REFS_BY_CONTACT_INDEX: Final = "by-contact"  # contact-refs: hash key contact_id, KEYS_ONLY (erasure)
# contact-refs: hash key scope (`shopify:<shop>`), range key contact_id, KEYS_ONLY: a shop's contacts (app/uninstalled)
CONTACT_REFS_BY_SCOPE_INDEX: Final = "by-scope"
# runs: sparse (active runs only), hash due_shard "<0..7>", range due_at, KEYS_ONLY (the repair job, ADR 0007)
RUNS_BY_DUE_INDEX: Final = "by-due"
# The repair job's recurring schedule: active runs whose wake-up is overdue are re-driven.
REPAIR_SCHEDULE: Final = "repair-overdue"
REPAIR_RATE: Final = "rate(15 minutes)"
# contacts: sparse, hash review_bucket "<YYYY-MM-DD>#<shard>", range review_at, KEYS_ONLY (segment sweep)
CONTACTS_REVIEW_INDEX: Final = "review"
# TTL attribute names (events: raw-event retention; counters: send-rate windows).
TTL_ATTRIBUTE: Final = "expires_at"

# Lambda entry points (module:function relative to the functions/ asset).
INGEST_HANDLER: Final = "nudge.handlers.ingest.handler"
STEP_HANDLER: Final = "nudge.handlers.step.handler"
WEBHOOKS_HANDLER: Final = "nudge.handlers.webhooks.handler"  # POST /webhooks/shopify, /webhooks/woocommerce
API_HANDLER: Final = "nudge.handlers.api.handler"  # /v1/track, identify, alias, batch, openapi.json
SUBSCRIBE_HANDLER: Final = "nudge.handlers.subscribe.handler"  # /v1/subscribe (+ OPTIONS), /v1/subscribe/confirm
FEEDBACK_HANDLER: Final = "nudge.handlers.feedback.handler"  # SNS: SES configuration-set events
UNSUBSCRIBE_HANDLER: Final = "nudge.handlers.unsubscribe.handler"  # API Gateway, public routes
SMS_INBOUND_HANDLER: Final = "nudge.handlers.sms_inbound.handler"  # SNS: two-way SMS
# SNS: End User Messaging Social's WhatsApp events; deployed only with a WhatsApp number
WHATSAPP_INBOUND_HANDLER: Final = "nudge.handlers.whatsapp_inbound.handler"
# Amazon Connect: a contact flow's missed call (synchronous); deployed only with a Connect instance
MISSED_CALL_HANDLER: Final = "nudge.handlers.calls.handler"
SWEEP_HANDLER: Final = "nudge.handlers.sweep.handler"  # daily schedule: segment reviews due by time

# Where flows/ and templates/ are copied inside the Lambda bundle.
BUNDLED_FLOWS_DIR: Final = "/var/task/flows"
BUNDLED_TEMPLATES_DIR: Final = "/var/task/templates"
BUNDLED_SEGMENTS_DIR: Final = "/var/task/segments"
BUNDLED_AUDIENCES_DIR: Final = "/var/task/audiences"

# HTTP header carrying the request signature: "t=<unix seconds>,v1=<hex HMAC-SHA256>".
MESSAGE_HEADER: Final = "X-Nudge-Message-Id"  # on every email: which message record it is
CONTACT_HEADER: Final = "X-Nudge-Contact-Id"  # and whose (the record's key: SES events carry both back)
SIGNATURE_HEADER: Final = "X-Nudge-Signature"

# Storefront webhook headers (API Gateway hands them over as sent; handlers look them up case-insensitively).
SHOPIFY_HMAC_HEADER: Final = "X-Shopify-Hmac-Sha256"
TWILIO_SIGNATURE_HEADER: Final = "X-Twilio-Signature"  # base64 HMAC-SHA1 over the URL and sorted form params
SHOPIFY_SHOP_HEADER: Final = "X-Shopify-Shop-Domain"
SHOPIFY_TOPIC_HEADER: Final = "X-Shopify-Topic"
SHOPIFY_WEBHOOK_ID_HEADER: Final = "X-Shopify-Webhook-Id"
WC_SIGNATURE_HEADER: Final = "X-WC-Webhook-Signature"
WC_SOURCE_HEADER: Final = "X-WC-Webhook-Source"
WC_TOPIC_HEADER: Final = "X-WC-Webhook-Topic"
WC_DELIVERY_HEADER: Final = "X-WC-Webhook-Delivery-ID"

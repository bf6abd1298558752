"""Deployment settings read from CDK context (`-c key=value` or cdk.json), with defaults that synth offline."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from nudge import names

# Every context key the app reads, with its default. cdk.json carries the same defaults (a test checks),
# because `python infra/app.py` run directly does not read cdk.json.
DEFAULTS: dict[str, Any] = {
    "stage": "dev",
    "fromAddress": "hello@example.com",
    "senderDomain": "",  # empty: the domain part of fromAddress
    "sesConfigurationSetName": "",  # empty: "<service>-<stage>"
    "createSenderIdentity": False,
    "defaultTimezone": "UTC",
    "apiThrottleRate": 50,
    "apiThrottleBurst": 100,
    "alarmEmail": "",  # empty: alarms are created without a notification topic
    # What a stage costs at rest (docs/deploy.md, "Rough monthly cost"): each of these adds to it.
    "detailedAlarms": False,  # also alarm on each function's errors and throttles (2 alarms per function)
    "dashboard": False,  # a CloudWatch dashboard (free for an account's first three, then $3 a month)
    "perFlowMetrics": False,  # EMF metrics per flow as well as totals (one custom metric per flow and name)
    "adAudiences": False,  # the secret the ad platforms' tokens go in, for audiences/ (docs/audiences.md; $0.40)
    "publicBaseUrl": "",  # empty: signed links (double opt-in, unsubscribe) point at the API's own URL
    "postalAddress": "",  # the sender's postal address for every email footer (CAN-SPAM); set it for prod
    "unsubscribeMailto": "",  # e.g. unsubscribe@shop.example; needs SES receiving set up (docs/deploy.md)
    "sesMaxSendRate": 14,  # the account's SES sending quota per second
    "workerConcurrency": 10,  # at most this many worker invocations at once (SQS maximum concurrency, 2-1000)
    # AWS End User Messaging Social's id of the WhatsApp number (phone-number-id-…) or its ARN; empty: no
    # WhatsApp, and no permission to send it (docs/whatsapp.md).
    "whatsappPhoneNumberId": "",
    "whatsappMetaApiVersion": "v20.0",
    # The ARN of the Amazon Connect instance whose contact flows report missed calls; empty: no such
    # function, and nothing may invoke one (docs/whatsapp.md, "Missed-call text-back").
    "connectInstanceArn": "",
}

_STAGE = re.compile(r"^[a-z][a-z0-9]{0,11}$")
_CONNECT_INSTANCE = re.compile(r"^arn:aws[a-z-]*:connect:[a-z0-9-]+:\d{12}:instance/[0-9a-f-]{36}$")
_EMAIL = re.compile(r"^[^@\s]+@([A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+)$")


class ConfigError(ValueError):
    """A context value is missing or malformed; the message names the key."""


def require_postal_address(config: NudgeConfig, flows_dir: Path, templates_dir: Path) -> None:
    """Outside dev, marketing email needs the sender's postal address (CAN-SPAM): from the `postalAddress`
    context or the brand kit. Raise ConfigError naming the flows that would send without one."""
    if not config.protected or config.postal_address:
        return
    from nudge.domain.flows import EmailStep
    from nudge.domain.model import Category
    from nudge.flow_files import load_catalog
    from nudge.templating import load_brand

    if load_brand(templates_dir).postal_address:
        return
    marketing = sorted(
        f"{flow.id}.{step.id}"
        for flow in load_catalog(flows_dir)
        for step in flow.steps
        if isinstance(step, EmailStep) and flow.category_of(step) is Category.MARKETING
    )
    if marketing:
        shown = ", ".join(marketing[:3]) + (f" and {len(marketing) - 3} more" if len(marketing) > 3 else "")
        raise ConfigError(
            f"postalAddress: stage {config.stage!r} sends marketing email ({shown}) but no postal address is set; "
            "pass -c postalAddress='…' or set postal_address in templates/brand.yaml (CAN-SPAM)"
        )


def _as_bool(value: Any) -> bool:
    # `-c createSenderIdentity=true` arrives as a string; cdk.json as a JSON boolean.
    return value is True or str(value).strip().lower() in {"1", "true", "yes"}


@dataclass(frozen=True)
class NudgeConfig:
    """What varies between deployments. `protected` (any stage but dev) keeps data on stack deletion."""

    stage: str
    from_address: str
    sender_domain: str
    ses_configuration_set_name: str
    create_sender_identity: bool
    default_timezone: str
    api_throttle_rate: float
    api_throttle_burst: int
    alarm_email: str | None
    detailed_alarms: bool = False
    dashboard: bool = False
    per_flow_metrics: bool = False
    ad_audiences: bool = False
    public_base_url: str = ""
    postal_address: str = ""
    unsubscribe_mailto: str = ""
    ses_max_send_rate: int = 14
    worker_concurrency: int = 10
    whatsapp_phone_number_id: str = ""
    whatsapp_meta_api_version: str = "v20.0"
    connect_instance_arn: str = ""

    @property
    def protected(self) -> bool:
        """Outside dev, tables and the signing secret survive `cdk destroy` and resist deletion."""
        return self.stage != "dev"

    @property
    def stack_name(self) -> str:
        return f"{names.SERVICE}-{self.stage}"

    @classmethod
    def from_context(cls, get: Callable[[str], Any]) -> NudgeConfig:
        """Build from a context getter (`app.node.try_get_context`); raise ConfigError naming a bad key."""

        def value(key: str) -> Any:
            found = get(key)
            return DEFAULTS[key] if found is None else found

        stage = str(value("stage"))
        if not _STAGE.match(stage):
            raise ConfigError(f"stage: {stage!r} must be lower-case letters and digits, e.g. dev or prod")
        from_address = str(value("fromAddress")).strip()
        match = _EMAIL.match(from_address)
        if not match:
            raise ConfigError(f"fromAddress: {from_address!r} is not an email address")
        sender_domain = str(value("senderDomain")).strip().lower() or match.group(1).lower()
        if not from_address.lower().endswith("@" + sender_domain) and not from_address.lower().endswith(
            "." + sender_domain
        ):
            raise ConfigError(f"senderDomain: {sender_domain!r} is not the domain of fromAddress {from_address!r}")
        timezone = str(value("defaultTimezone"))
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"defaultTimezone: {timezone!r} is not an IANA time zone") from None
        try:
            rate, burst = float(value("apiThrottleRate")), int(value("apiThrottleBurst"))
        except (TypeError, ValueError):
            raise ConfigError("apiThrottleRate and apiThrottleBurst must be numbers") from None
        if rate <= 0 or burst <= 0:
            raise ConfigError("apiThrottleRate and apiThrottleBurst must be positive")
        public_base_url = str(value("publicBaseUrl")).strip().rstrip("/")
        if public_base_url and not public_base_url.startswith("https://"):
            raise ConfigError(f"publicBaseUrl: {public_base_url!r} must be an https:// URL")
        mailto = str(value("unsubscribeMailto")).strip()
        if mailto and not _EMAIL.match(mailto):
            raise ConfigError(f"unsubscribeMailto: {mailto!r} is not an email address")
        try:
            send_rate = int(value("sesMaxSendRate"))
        except (TypeError, ValueError):
            raise ConfigError("sesMaxSendRate: a whole number of emails per second") from None
        if not 1 <= send_rate <= 10_000:
            raise ConfigError("sesMaxSendRate: between 1 and 10000")
        try:
            concurrency = int(value("workerConcurrency"))
        except (TypeError, ValueError):
            raise ConfigError("workerConcurrency: a whole number of concurrent worker invocations") from None
        if not 2 <= concurrency <= 1000:
            raise ConfigError("workerConcurrency: between 2 and 1000 (SQS event-source maximum concurrency)")
        whatsapp_number = str(value("whatsappPhoneNumberId")).strip()
        if whatsapp_number and not re.match(names.WHATSAPP_PHONE_NUMBER_ID_PATTERN, whatsapp_number):
            raise ConfigError(
                f"whatsappPhoneNumberId: {whatsapp_number!r} is not a phone number id (phone-number-id-…) or its ARN"
            )
        meta_api_version = str(value("whatsappMetaApiVersion")).strip()
        if not re.match(r"^v\d+\.\d+$", meta_api_version):
            raise ConfigError(f"whatsappMetaApiVersion: {meta_api_version!r} is not a Meta API version like v20.0")
        connect_instance = str(value("connectInstanceArn")).strip()
        if connect_instance and not _CONNECT_INSTANCE.match(connect_instance):
            raise ConfigError(f"connectInstanceArn: {connect_instance!r} is not an Amazon Connect instance ARN")
        alarm_email = str(value("alarmEmail")).strip() or None
        if alarm_email and not _EMAIL.match(alarm_email):
            raise ConfigError(f"alarmEmail: {alarm_email!r} is not an email address")
        return cls(
            stage=stage,
            from_address=from_address,
            sender_domain=sender_domain,
            ses_configuration_set_name=str(value("sesConfigurationSetName")).strip() or f"{names.SERVICE}-{stage}",
            create_sender_identity=_as_bool(value("createSenderIdentity")),
            default_timezone=timezone,
            api_throttle_rate=rate,
            api_throttle_burst=burst,
            alarm_email=alarm_email,
            detailed_alarms=_as_bool(value("detailedAlarms")),
            dashboard=_as_bool(value("dashboard")),
            per_flow_metrics=_as_bool(value("perFlowMetrics")),
            ad_audiences=_as_bool(value("adAudiences")),
            public_base_url=public_base_url,
            postal_address=str(value("postalAddress")).strip(),
            unsubscribe_mailto=mailto,
            ses_max_send_rate=send_rate,
            worker_concurrency=concurrency,
            whatsapp_phone_number_id=whatsapp_number,
            whatsapp_meta_api_version=meta_api_version,
            connect_instance_arn=connect_instance,
        )

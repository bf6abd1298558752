"""The nudge CDK app: one stack, one construct per concern (see docs/adr/0002-infrastructure.md)."""

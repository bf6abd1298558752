"""The Lambda functions' entry points (one module each) and what they share.

Importing this package in Lambda pauses the garbage collector until the first invocation has built what
its request uses, before the request runs (`nudge.handlers.collector`, ADR 0020 Decision 10).
"""

from nudge.handlers import collector

collector.pause_for_cold_start()

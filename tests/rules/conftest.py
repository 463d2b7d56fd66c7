"""Fixtures shared with other test folders."""

from tests.outbound.conftest import smtp_sink  # noqa: F401  (a real SMTP server: aiosmtpd)

"""Outbound mail: compose, a durable outbox in the database, SMTP/file transports and the sender loop."""

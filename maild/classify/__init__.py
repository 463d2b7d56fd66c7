"""Machine mail recognised at ingest: bounces, auto-replies, complaint reports, list mail, notifications."""

"""Ingestion: sources (IMAP, Maildir) deliver raw bytes; parse and pipeline store them exactly once."""

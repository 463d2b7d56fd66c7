"""The IMAP connection: log-in, folders, waiting for news; used by ingest, filing and the Sent copy alike."""

"""One function per operation, shared by the CLI, the web app and the JSON API (no SQL in their handlers)."""

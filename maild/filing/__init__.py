"""IMAP auto-filing: once a message's third party is decided, move, copy or tag it on the server.

`folders` renders a per-customer folder path from a template, safely; `imap_filer` does the IMAP side
(folder creation, MOVE or COPY+EXPUNGE, keywords); `runner` works through the pending `filing_tasks`
of one selected folder, records every outcome and appends a `mail.filed` event per filed message.
"""

"""Business records on a third party's timeline: invoices and payments, meetings, tasks and notes.

Functions taking a `conn` work inside the caller's transaction (a SQLAlchemy Connection); the others open
their own through a `Database`. Invalid input raises ValueError, an unknown reference LookupError.
"""

ENTITIES = ("invoices", "payments", "meetings")  # what `maild import` reads besides the directory

"""maild: turns a company's mailboxes into an automated, complete customer history."""

__version__ = "0.1.0"

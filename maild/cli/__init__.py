"""Command-line interface: `maild` and its subcommands (click)."""

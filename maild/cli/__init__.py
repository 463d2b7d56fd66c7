"""Command-line interface: `maild` (maild/cli/main.py) and its subcommands (click)."""

"""Command-line interface: `maild` and its subcommands (click)."""

# The subcommand modules take AppContext from maild.cli.main, which registers them when it is imported: build
# the command tree first, so importing any one of them on its own (maild.cli.business) finds main complete.
import maild.cli.main  # noqa: F401

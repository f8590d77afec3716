"""Command-line entry points (`compgs <command>`), one module per command."""

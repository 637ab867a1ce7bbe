"""Subcommands of ``mtrec``."""

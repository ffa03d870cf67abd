"""Shared pieces every app uses: output formatting for commands."""

__version__ = "0.1.0"

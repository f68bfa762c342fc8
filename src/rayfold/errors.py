"""Errors that become rows of the errors table instead of stopping a run."""

from __future__ import annotations


class InputError(Exception):
    """A structure that cannot be used, with a short machine-readable `kind`.

    Raised by the pure modules (reading, parsing, fragmenting); the pipeline records it as a row of
    the errors table (input, stage, kind, message) and goes on with the next input.
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"

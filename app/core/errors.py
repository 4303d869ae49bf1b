"""Errors a user can act on.

Everything below the UI raises :class:`RigfitError` (or a subclass) for bad input; the message is
written for the user, in their words, and the CLI prints it as one line with exit code 2.
"""

from __future__ import annotations


class RigfitError(Exception):
    """A problem the user can fix (bad file, unknown GPU, impossible split...)."""


class BadModelFile(RigfitError):
    """A model file that is missing, not a GGUF, truncated or corrupt."""


class UnknownName(RigfitError):
    """A GPU, model or quantization name that Rigfit does not know."""


class RigfitWarning(UserWarning):
    """Rigfit's own warnings; tests turn them into errors."""

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


MAX_MESSAGE_CHARS = 600


def one_line(message: object, limit: int = MAX_MESSAGE_CHARS) -> str:
    """A message as one printable line of at most ``limit`` characters.

    Messages quote what files and users gave (tensor names, keys, paths); a newline or a megabyte
    of name in there must not turn one line of error into a screenful.
    """
    text = str(message)
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    text = " ".join(text.split()) if any(not c.isprintable() for c in text) else text
    text = "".join(c if c.isprintable() else "?" for c in text)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text

"""Reading the files a user names, safely: regular files only, a size cap per format, clear errors.

A path on a command line or in a file dialog can be anything: a FIFO (opening it blocks until some
other program writes), ``/dev/zero`` (reading never ends), a folder, a 5000-character name, bytes
that are not UTF-8, a JSON or TOML file nested ten thousand levels deep. Every reader of a
user-given file goes through here, so each of those is one line in the user's words:

* :func:`open_regular` opens with ``O_NONBLOCK`` (a FIFO opens at once instead of waiting for a
  writer) and refuses anything ``fstat`` does not call a regular file;
* :func:`read_capped` reads at most the format's cap (one byte more tells "too large");
* :func:`parse_json` / :func:`parse_toml` turn a parse error or a ``RecursionError`` (deep nesting)
  into the caller's error type;
* :func:`show_path` makes a path printable and short enough for a one-line message.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import tomllib

from app.core.errors import RigfitError

MIB = 1 << 20
# Caps by format: a few times the largest real file of each kind.
MAX_CONFIG_JSON_BYTES = 16 * MIB  # Hugging Face config.json: usually under 10 KiB, id2label maps a few MiB
MAX_RIG_FILE_BYTES = 1 * MIB  # a rig file of 64 GPUs is about 10 KiB
MAX_CATALOG_BYTES = 16 * MIB  # resources/models.toml and gpus.toml: under 100 KiB
MAX_RECORDING_BYTES = 64 * MIB  # NVML recordings (app.hardware.record): under 1 MiB
MAX_SHOWN_PATH = 160  # characters of a path shown in a message

_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NOCTTY = getattr(os, "O_NOCTTY", 0)
_BINARY = getattr(os, "O_BINARY", 0)


def show_path(path: str | os.PathLike[str]) -> str:
    """``path`` as text for a message: undecodable bytes escaped, long paths shortened in the middle."""
    text = os.fspath(path)
    # A name that is not UTF-8 comes back from the OS with surrogate escapes; print them as \xNN.
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    text = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
    if len(text) > MAX_SHOWN_PATH:
        half = MAX_SHOWN_PATH // 2 - 2
        text = f"{text[:half]}...{text[-half:]}"
    return text


def printable(text: str, limit: int = 200) -> str:
    """A name from a file or a path as display text: undecodable bytes and control characters
    replaced, at most ``limit`` characters."""
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    text = "".join(c if c.isprintable() else "\ufffd" for c in text).strip()
    return text[:limit]


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def os_problem(exc: OSError) -> str:
    """What an OSError means, in a few words."""
    code = exc.errno
    if code == errno.ENOENT:
        return "not found"
    if code == errno.ENAMETOOLONG:
        return "the name is too long for this system"
    if code in (errno.EACCES, errno.EPERM):
        return "no permission to read it"
    if code == errno.ELOOP:
        return "too many symbolic links"
    if code == errno.ENOTDIR:
        return "a part of the path is not a folder"
    if code == errno.EISDIR:
        return "it is a folder"
    return exc.strerror or str(exc)


def safe_stat(path: str | os.PathLike[str]) -> os.stat_result | None:
    """``os.stat`` that never raises: None when the path is missing or cannot be looked at."""
    try:
        return os.stat(path)
    except (OSError, ValueError):  # ValueError: a NUL byte in the path
        return None


def path_exists(path: str | os.PathLike[str]) -> bool:
    """Whether something is at ``path`` (False for a name too long or with a NUL, instead of raising)."""
    return safe_stat(path) is not None


def open_regular(
    path: str | os.PathLike[str], what: str, error: type[RigfitError] = RigfitError
) -> tuple[int, int]:
    """Open a regular file for reading without blocking on a FIFO; returns ``(fd, size)``.

    ``what`` names the file for messages ("rig file", "model file"). Raises ``error`` for a missing
    file, a folder, a FIFO, a device, a name that is too long, and for no permission.
    """
    shown = show_path(path)
    try:
        fd = os.open(path, os.O_RDONLY | _NONBLOCK | _CLOEXEC | _NOCTTY | _BINARY)
    except FileNotFoundError:
        raise error(f"{what} not found: {shown}") from None
    except ValueError:
        raise error(f"{what} name holds a NUL character: {shown}") from None
    except OSError as exc:
        raise error(f"cannot read the {what} {shown}: {os_problem(exc)}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error(f"the {what} {shown} is {_kind(st.st_mode)}, not a file Rigfit can read")
        if _NONBLOCK and hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd, st.st_size


def read_capped(
    path: str | os.PathLike[str], what: str, max_bytes: int, error: type[RigfitError] = RigfitError
) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``; ``error`` when larger or unreadable."""
    fd, size = open_regular(path, what, error)
    try:
        if size > max_bytes:
            raise error(_too_large(what, path, size, max_bytes))
        chunks: list[bytes] = []
        total = 0
        while total <= max_bytes:
            # A file growing while it is read still stops at the cap.
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > max_bytes:
            raise error(_too_large(what, path, total, max_bytes))
        return b"".join(chunks)
    except OSError as exc:
        raise error(f"cannot read the {what} {show_path(path)}: {os_problem(exc)}") from None
    finally:
        os.close(fd)


def _too_large(what: str, path: str | os.PathLike[str], size: int, cap: int) -> str:
    return (
        f"the {what} {show_path(path)} is {size / MIB:.1f} MiB; a {what} is at most {cap / MIB:g} MiB, "
        "so this is not one"
    )


def read_text(
    path: str | os.PathLike[str], what: str, max_bytes: int, error: type[RigfitError] = RigfitError
) -> str:
    """A capped regular file decoded as UTF-8 (a BOM is dropped); ``error`` for anything else."""
    data = read_capped(path, what, max_bytes, error)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(f"the {what} {show_path(path)} is not a text (UTF-8) file (byte {exc.start})") from None


def parse_json(text: str | bytes, origin: str, error: type[RigfitError] = RigfitError) -> object:
    """``json.loads`` with one-line errors; nesting too deep for the parser is an error too."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{origin} is not valid JSON: line {exc.lineno}: {exc.msg}") from None
    except RecursionError:
        raise error(f"{origin} nests its values too deeply to be read") from None
    except (ValueError, TypeError) as exc:  # bytes that are not UTF-8; huge integers
        raise error(f"{origin} is not valid JSON ({exc})") from None


def parse_toml(text: str, origin: str, error: type[RigfitError] = RigfitError) -> dict[str, object]:
    """``tomllib.loads`` with one-line errors; nesting too deep for the parser is an error too."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{origin} is not valid TOML: {exc}") from None
    except RecursionError:
        raise error(f"{origin} nests its values too deeply to be read") from None
    except ValueError as exc:  # an integer too long for int(): Python's digit limit
        raise error(f"{origin} is not valid TOML: {exc}") from None


def is_dir(path: str | os.PathLike[str]) -> bool:
    """``Path.is_dir`` that never raises."""
    st = safe_stat(path)
    return st is not None and stat.S_ISDIR(st.st_mode)


def is_regular(path: str | os.PathLike[str]) -> bool:
    """``Path.is_file`` that never raises (True for a regular file only)."""
    st = safe_stat(path)
    return st is not None and stat.S_ISREG(st.st_mode)


def describe_missing(path: str | os.PathLike[str]) -> str:
    """Why ``path`` cannot be looked at (for a message): not found, name too long, ..."""
    try:
        os.stat(path)
    except ValueError:
        return "the name holds a NUL character"
    except OSError as exc:
        return os_problem(exc)
    return "it exists"


__all__ = [
    "MAX_CATALOG_BYTES",
    "MAX_CONFIG_JSON_BYTES",
    "MAX_RECORDING_BYTES",
    "MAX_RIG_FILE_BYTES",
    "describe_missing",
    "is_dir",
    "is_regular",
    "open_regular",
    "parse_json",
    "parse_toml",
    "path_exists",
    "printable",
    "read_capped",
    "read_text",
    "safe_stat",
    "show_path",
]

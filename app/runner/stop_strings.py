"""Stop sequences over a token stream: text is released only once it cannot be the start of a stop string.

OpenAI's ``stop`` parameter ends a reply where a string appears, and the string is not part of the
reply. Tokens rarely line up with stop strings (``"\\n\\nUser:"`` may arrive as ``"\\n"``, ``"\\nUser"``,
``":"``), so a streamed reply must hold back the tail that might still grow into one; otherwise a
client would already have shown the first half of it. The worker feeds each token's text here and
streams what comes out.
"""

from __future__ import annotations

from collections.abc import Sequence


class StopScanner:
    """Feeds text pieces, returns the part that is safe to release, and says when a stop string matched."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = tuple(s for s in stops if s)
        self._pending = ""
        self.matched: str | None = None

    def feed(self, piece: str) -> str:
        """The text released by ``piece``; after a match, the text up to the stop string and nothing more."""
        if self.matched is not None:
            return ""
        pending = self._pending + piece
        # The stop that is complete first wins (the smallest end; then the earliest start), as if the
        # text had come one character at a time: the answer must not depend on how tokens split it.
        best: tuple[int, int] | None = None
        for stop in self.stops:
            at = pending.find(stop)
            if at != -1 and (best is None or (at + len(stop), at) < best):
                best, self.matched = (at + len(stop), at), stop
        if best is not None:
            cut = best[1]
            self._pending = ""
            return pending[:cut]
        keep = self._held_back(pending)
        self._pending = pending[len(pending) - keep :]
        return pending[: len(pending) - keep]

    def flush(self) -> str:
        """What is still held back, released because the generation ended without a match."""
        pending, self._pending = self._pending, ""
        return pending

    def _held_back(self, pending: str) -> int:
        """The length of the longest tail of ``pending`` that a stop string starts with."""
        keep = 0
        for stop in self.stops:
            # Only a tail shorter than the stop string can be its unfinished start.
            pos = pending.find(stop[0], max(0, len(pending) - len(stop) + 1))
            while pos != -1:
                if stop.startswith(pending[pos:]):
                    keep = max(keep, len(pending) - pos)
                    break
                pos = pending.find(stop[0], pos + 1)
        return keep

"""Bytes from a serial port to whole lines. Pure: no I/O.

A serial line is hostile input: partial lines at start-up or after a replug, garbage at the
wrong baud rate, a stream without line ends. Lines longer than the limit are discarded up to
the next line end, never cut into a shorter (and so possibly valid-looking) line.
"""

from __future__ import annotations


class LineFramer:
    """Feed it chunks; it returns the complete lines (without ``\\r\\n``), and counts the
    over-long ones it discarded."""

    def __init__(self, limit: int) -> None:
        self.limit = limit  # bytes
        self.overlong = 0
        self._pending = bytearray()
        self._skipping = False  # inside an over-long line: drop up to its end

    def feed(self, data: bytes) -> list[bytes]:
        """The lines completed by ``data``, oldest first; empty lines are left out."""
        out: list[bytes] = []
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                break
            if self._skipping:
                self._skipping = False
            elif len(self._pending) + end - start > self.limit:
                self.overlong += 1
            else:
                self._pending += data[start:end]
                line = bytes(self._pending).strip(b"\r")
                if line:
                    out.append(line)
            self._pending.clear()
            start = end + 1
        if not self._skipping:
            self._pending += data[start:]
            if len(self._pending) > self.limit:
                self.overlong += 1
                self._pending.clear()
                self._skipping = True
        return out

    def reset(self) -> int:
        """Forget a partial line (the port was closed): returns its length in bytes."""
        cut = len(self._pending)
        self._pending.clear()
        self._skipping = False
        return cut

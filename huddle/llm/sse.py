"""A bounded decoder for server-sent events (the ``text/event-stream`` of OpenAI-style APIs).

Pure: bytes in, events out. Besides the standard ``data:``/``event:`` fields it accepts the
``error: {...}`` lines llama.cpp's server writes when a streamed request fails."""

from __future__ import annotations

from dataclasses import dataclass


class SseTooLarge(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class SseEvent:
    data: str
    event: str = "message"


class SseDecoder:
    def __init__(self, max_event_bytes: int) -> None:
        self._max = max_event_bytes
        self._buffer = bytearray()
        self._data: list[str] = []
        self._data_bytes = 0
        self._event = ""

    def feed(self, chunk: bytes) -> list[SseEvent]:
        self._buffer += chunk
        events: list[SseEvent] = []
        start = 0
        while (end := self._buffer.find(b"\n", start)) >= 0:
            line = bytes(self._buffer[start:end]).removesuffix(b"\r")
            start = end + 1
            event = self._line(line)
            if event is not None:
                events.append(event)
        del self._buffer[:start]
        if len(self._buffer) + self._data_bytes > self._max:
            raise SseTooLarge(f"server-sent event larger than {self._max} bytes")
        return events

    def flush(self) -> list[SseEvent]:
        """End of stream: a last event that lacks its blank line still counts."""
        events = self.feed(b"\n") if self._buffer else []
        event = self._dispatch()
        return [*events, event] if event is not None else events

    def _line(self, line: bytes) -> SseEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(b":"):
            return None  # comment, e.g. a keep-alive ping
        name, _, value = line.partition(b":")
        text = value.removeprefix(b" ").decode("utf-8", errors="replace")
        if name == b"data":
            self._data.append(text)
            self._data_bytes += len(value)
            if self._data_bytes > self._max:
                raise SseTooLarge(f"server-sent event larger than {self._max} bytes")
        elif name == b"event":
            self._event = text
        elif name == b"error":  # llama.cpp: "error: {json}"
            self._event = "error"
            self._data.append(text)
            self._data_bytes += len(value)
        return None

    def _dispatch(self) -> SseEvent | None:
        if not self._data:
            self._event = ""
            return None
        event = SseEvent(data="\n".join(self._data), event=self._event or "message")
        self._data.clear()
        self._data_bytes = 0
        self._event = ""
        return event

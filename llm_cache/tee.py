"""A `flow.response.stream` callable that forwards each chunk untouched (the client sees the stream as
it arrives) and keeps a decoded copy for the cache (compressed streams are stored decoded, within
the recording limit: llm_cache.decode)."""

from collections.abc import Callable

from llm_cache.decode import Decoder, TooLarge

MAX_RECORDED_STREAM = 64 * 1024 * 1024  # past this the stream still flows, but is not recorded


class StreamTee:
    def __init__(self, content_encoding: str, limit: int = MAX_RECORDED_STREAM,
                 listener: Callable[[bytes], None] | None = None) -> None:
        """`listener` gets each chunk as it came (encoded), and b"" at the end: a live relay."""
        self._limit = limit
        self._listener = listener
        self.body = bytearray()
        self._whole: bytes | None = None  # `body` as bytes, made once
        self.finished = False
        self.problem: str | None = None
        self._decoder: Decoder | None = None
        # Almost every stream is not encoded: kept as it comes, with no decoder in between.
        self.plain = content_encoding.strip().lower() in ("", "identity")
        if not self.plain:
            try:
                self._decoder = Decoder(content_encoding, limit)
            except ValueError as e:
                self.problem = str(e)

    def __call__(self, data: bytes) -> bytes:
        if self._listener is not None:
            self._listener(data)
        if not data:  # mitmproxy's end-of-message call
            self.finished = True
        elif self.plain:  # called once per chunk, hundreds of times per agent answer: kept short
            self.body += data
            if len(self.body) > self._limit:
                self._give_up(f"stream larger than {self._limit} bytes")
        elif self._decoder is not None:
            try:
                self.body += self._decoder.feed(data)
            except TooLarge:
                self._give_up(f"stream larger than {self._limit} bytes")
            except ValueError as e:
                self._give_up(f"stream did not decode: {e}")
        return data

    def whole(self) -> bytes:
        """The decoded stream so far as bytes, copied once however often it is asked for (the
        recording and the flow's copy for mitmweb share it)."""
        if self._whole is None or len(self._whole) != len(self.body):
            self._whole = bytes(self.body)
        return self._whole

    def release(self) -> None:
        """The stream is recorded (or given up): its copies go."""
        self.body, self._whole = bytearray(), None

    def _give_up(self, problem: str) -> None:
        self.problem = problem
        self.release()
        self._decoder = None
        self.plain = False

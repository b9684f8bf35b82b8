"""llm-cache: a replay cache for LLM API calls, as a mitmproxy addon.

    mitmdump -s addon.py          (or scripts/run, which also loads ./config.yaml)

One request through this file: `requestheaders` recognises an LLM endpoint and captures its target
(before other addons may rewrite the URL) -> `request` builds the key and answers a hit from the
store -> on a miss, `responseheaders` tees a stream into memory without delaying it -> `response`
validates the complete answer and hands it to the writer thread. Anything that fails on the way
passes the flow through untouched (llm_cache.failures).
"""

import gc
import logging
import os
import time

import orjson
from mitmproxy import command, ctx, exceptions, http

import cache_models
from llm_cache import answers, keys
from llm_cache.endpoints import family_for
from llm_cache.failures import FailureLog
from llm_cache.tee import StreamTee

logger = logging.getLogger(__name__)

META = "llm_cache"  # flow.metadata[META]: plain data only (flows are saved with it)
DEFAULT_DB = "sqlite:///llm-cache.sqlite3"
REOPEN_AFTER = 30.0  # seconds between attempts to open a database that was unavailable

MARK_HIT = ":zap:"
MARK_STORED = ":floppy_disk:"
MARK_NOT_STORED = ":red_circle:"


class LLMCache:
    def __init__(self) -> None:
        self.store: cache_models.CacheStore | None = None
        self.db_url = ""
        self._reopen_at = 0.0
        self._memo = keys.BodyMemo()
        self._failures = FailureLog()

    def load(self, loader) -> None:
        loader.add_option(
            "llm_cache_db", str, DEFAULT_DB,
            "Peewee database URL of the cache: sqlite:///FILE (a relative FILE is resolved against "
            "mitmproxy's confdir) or postgresql://USER:PASSWORD@HOST:PORT/DB.",
        )

    def configure(self, updated: set[str]) -> None:
        if "llm_cache_db" not in updated and "confdir" not in updated:
            return
        confdir = os.path.expanduser(ctx.options.confdir)
        try:
            url = cache_models.resolve_db_url(ctx.options.llm_cache_db, confdir)
        except ValueError as e:
            raise exceptions.OptionsError(str(e)) from e
        if url != self.db_url:
            self._close()
            self.db_url = url
            self._open()

    def running(self) -> None:
        # Everything loaded by now lives as long as the process. Frozen, the collector stops
        # rescanning it: a full collection in mitmdump took ~35 ms of loop time under load, ~2 ms after.
        gc.freeze()
        ca = os.path.abspath(os.path.join(os.path.expanduser(ctx.options.confdir), "mitmproxy-ca-cert.pem"))
        proxy = f"http://{ctx.options.listen_host or '127.0.0.1'}:{self._listen_port()}"
        logger.info(
            "llm-cache: caching LLM calls in %s. Point an agent at it with:\n"
            "    export HTTPS_PROXY=%s HTTP_PROXY=%s SSL_CERT_FILE=%s NODE_EXTRA_CA_CERTS=%s "
            "REQUESTS_CA_BUNDLE=%s NODE_USE_ENV_PROXY=1; unset NO_PROXY no_proxy",
            cache_models.redact_url(self.db_url), proxy, proxy, ca, ca, ca,
        )

    def done(self) -> None:
        self._close()

    # -- the request path ---------------------------------------------------------------------

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return
        request = flow.request
        family = family_for(request.method, request.path, request.headers.get("content-type", ""))
        if family is None:
            return
        path = request.path
        target = keys.make_target(
            request.method, request.scheme, request.host, request.port, path,
            request.query.items(multi=True) if "?" in path else (), request.headers.items(multi=True),
        )
        flow.metadata[META] = {"family": family, "target": target}  # plain data: a str and a tuple

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return
        state = flow.metadata.get(META)
        if state is None:
            return
        store = self._store()
        if store is None:
            del flow.metadata[META]
            return
        family = state["family"]
        try:
            facts = self._memo.facts(family, flow.request.get_content(strict=True) or b"")
        except Exception as e:  # undecodable, not JSON, nested past any sane depth: not ours to judge
            self._failures.passed_through("reading the request body", e)
            facts = None
        if facts is None:  # not JSON of the expected shape: not an LLM call after all
            del flow.metadata[META]
            return
        key = keys.cache_key(state["target"], facts.digest)
        state.update(key=key, model=facts.model, stream=facts.stream, include_usage=facts.include_usage)
        now = time.time()
        try:
            record = store.find(key)
            answer = None
            if record is not None:
                answer = answers.replay(
                    record, family, want_stream=facts.stream, include_usage=facts.include_usage, now=now
                )
        except Exception as e:
            self._failures.passed_through("the cache lookup", e)
            del flow.metadata[META]
            return
        if record is None or answer is None:
            state["status"] = "MISS"
            return
        flow.response = http.Response.make(answer.status, answer.body, _wire_headers(answer.headers))
        state["status"] = "HIT"
        _mark(flow, MARK_HIT, f"llm-cache HIT {key[:12]} age {int(now - record.created_at)}s")
        store.touch(key, now)

    # -- the response path --------------------------------------------------------------------

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        state = flow.metadata.get(META)
        if not state or state.get("status") != "MISS" or flow.response is None:
            return
        response = flow.response
        response.headers["X-LLM-Cache"] = "MISS"
        if 200 <= response.status_code < 300 and answers.is_event_stream(response.headers.get("content-type", "")):
            response.stream = StreamTee(response.headers.get("content-encoding", ""))

    def response(self, flow: http.HTTPFlow) -> None:
        state = flow.metadata.get(META)
        if not state or state.get("status") != "MISS" or flow.response is None:
            return
        outcome = self._record(flow, state)
        state["store"] = outcome
        if not isinstance(flow.response.stream, StreamTee):  # a streamed response's headers are gone
            flow.response.headers["X-LLM-Cache-Store"] = outcome
        mark = MARK_STORED if outcome == "stored" else MARK_NOT_STORED
        _mark(flow, mark, f"llm-cache MISS {state['key'][:12]} {outcome}")

    def _record(self, flow: http.HTTPFlow, state: dict) -> str:
        """Hand a complete success to the store; say what happened, as X-LLM-Cache-Store does."""
        response = flow.response
        assert response is not None
        store = self._store()
        if store is None:
            return "skipped: cache unavailable"
        family = state["family"]
        tee = response.stream if isinstance(response.stream, StreamTee) else None
        try:
            if tee is not None:
                if tee.problem or not tee.finished:
                    return f"skipped: {tee.problem or 'stream did not finish'}"
                body, is_stream = bytes(tee.body), True
            else:
                body = response.get_content(strict=True) or b""
                is_stream = answers.is_event_stream(response.headers.get("content-type", ""))
            problem = answers.storage_problem(family, response.status_code, body, is_stream=is_stream)
            if problem:
                return f"skipped: {problem}"
            store.put(answers.make_record(
                key=state["key"], family=family, target=state["target"], model=state["model"],
                request_body=flow.request.get_content(strict=True) or b"", status=response.status_code,
                headers=list(response.headers.items(multi=True)), body=body, is_stream=is_stream, now=time.time(),
            ))
        except Exception as e:
            self._failures.passed_through("recording the response", e)
            return f"skipped: {type(e).__name__}"
        return "stored"

    # -- commands -----------------------------------------------------------------------------

    @command.command("llmcache.stats")
    def stats(self) -> str:
        """Entries, hits and bytes per endpoint family."""
        return orjson.dumps(self._require_store().stats(), option=orjson.OPT_INDENT_2).decode()

    @command.command("llmcache.clear")
    def clear(self) -> int:
        """Delete every cache entry; returns how many were deleted."""
        return self._require_store().clear()

    # -- the store's life ---------------------------------------------------------------------

    def _store(self) -> cache_models.CacheStore | None:
        if self.store is None and self.db_url and time.monotonic() >= self._reopen_at:
            self._open()
        return self.store

    def _require_store(self) -> cache_models.CacheStore:
        store = self._store()
        if store is None:
            raise exceptions.CommandError(f"the cache database {cache_models.redact_url(self.db_url)} is unavailable")
        return store

    def _open(self) -> None:
        try:
            self.store = cache_models.CacheStore(self.db_url)
        except Exception as e:
            self.store = None
            self._reopen_at = time.monotonic() + REOPEN_AFTER
            self._failures.passed_through(f"opening the cache database {cache_models.redact_url(self.db_url)}", e)
        else:
            logger.info("llm-cache: cache database %s", cache_models.redact_url(self.db_url))

    def _close(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None

    def _listen_port(self) -> int:
        server = ctx.master.addons.get("proxyserver")
        for address in getattr(server, "listen_addrs", lambda: [])():
            return address[1]
        return ctx.options.listen_port or 8080


def _wire_headers(headers: list[tuple[str, str]]) -> http.Headers:
    return http.Headers([(n.encode(), v.encode()) for n, v in headers])


def _mark(flow: http.HTTPFlow, mark: str, comment: str) -> None:
    """What a mitmweb user sees: filter `~marked` for the cache's work."""
    flow.marked = mark
    flow.comment = comment


addons = [LLMCache()]

"""llm-cache: a replay cache for LLM API calls, as a mitmproxy addon.

    mitmdump -s addon.py          (or scripts/run, which also loads ./config.yaml)

One request through this file: `requestheaders` recognises an LLM endpoint and captures its target
(before other addons may rewrite the URL) -> `request` builds the key and answers a hit from the
store -> on a miss, `responseheaders` tees a stream into memory without delaying it -> `response`
validates the complete answer and hands it to the writer process. Anything that fails on the way
passes the flow through untouched (llm_cache.failures).
"""

import asyncio
import copy
import gc
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import orjson
from mitmproxy import command, ctx, exceptions, http
from mitmproxy.hooks import UpdateHook
from mitmproxy.net.http import status_codes

import cache_models
from llm_cache import answers, keys, policy
from llm_cache.closest import describe, nearest
from llm_cache.controls import OWN_HEADERS, has_own_headers, read_controls
from llm_cache.credentials import credentials
from llm_cache.decode import TooLarge, decode
from llm_cache.endpoints import PASSED_THROUGH, Wire, is_websocket_upgrade, route_for
from llm_cache.explain import NearMiss
from llm_cache.failures import FailureLog
from llm_cache.flights import Flight, Flights, Relayed
from llm_cache.lookup import Found, find_entry
from llm_cache.normalise import canonical_form
from llm_cache.plan import Plan, is_expired, plan_for
from llm_cache.records import Record, unpack_request
from llm_cache.secrets import SecretScanner
from llm_cache.status import Status, is_status_header, status_headers, store_headers
from llm_cache.tee import StreamTee

logger = logging.getLogger(__name__)

META = "llm_cache"  # flow.metadata[META]: plain data only (flows are saved with it)
DEFAULT_DB = "sqlite:///llm-cache.sqlite3"
REOPEN_AFTER = 30.0  # seconds between attempts to open a database that was unavailable
PROBE_TIMEOUT = 5.0  # seconds: stale-if-error's check that an upstream can be reached at all
STALE_STATUSES = frozenset({429, 500, 502, 503, 504})  # upstream failures stale-if-error covers

NEAR_MISS_FLOWS = 256  # recorded flows kept for the comment their near miss adds
NEAR_MISS_LOG_EVERY = 5.0  # seconds: near misses logged at most this often (every one is in its comment)
STORE_WAIT = 2.0  # seconds an answer waits for its entry to be committed before it says "queued"

MARK_HIT = ":zap:"
MARK_STORED = ":floppy_disk:"
MARK_NOT_STORED = ":red_circle:"


_DEFAULT = policy.Settings()  # the defaults live there, once

# (name, type, default, help): every option of the cache; policy.settings_from parses them.
OPTIONS: tuple[tuple[str, type, Any, str], ...] = (
    ("mode", str, _DEFAULT.mode.value,
     "record (answer hits, record misses), replay (never go upstream: a miss is a 400 "
     "naming the closest stored request), refresh (always go upstream and overwrite), readonly (never write), "
     "writeonly (never answer from the cache) or off."),
    ("ttl", int, _DEFAULT.ttl,
     "Seconds an entry is served for; 0 = forever. A request may set its own with X-LLM-Cache-TTL."),
    ("stale_if_error", bool, _DEFAULT.stale_if_error,
     "Serve an expired entry (X-LLM-Cache: STALE) when the upstream answers "
     "429/5xx or cannot be reached."),
    ("allow_hosts", Sequence[str], [], "Cache only these hosts (shell globs, e.g. *.openai.com); empty = all."),
    ("deny_hosts", Sequence[str], [], "Never cache these hosts (shell globs)."),
    ("allow_models", Sequence[str], [], "Cache only these models (shell globs); empty = all."),
    ("deny_models", Sequence[str], [], "Never cache these models (shell globs)."),
    ("allow_families", Sequence[str], [], "Cache only these endpoint families (e.g. openai.*); empty = all."),
    ("deny_families", Sequence[str], [], "Never cache these endpoint families (e.g. openai.embeddings)."),
    ("max_request_bytes", int, _DEFAULT.max_request_bytes,
     "Larger requests pass through uncached."),
    ("max_response_bytes", int, _DEFAULT.max_response_bytes,
     "Larger responses are passed on but not recorded."),
    ("temperature", str, _DEFAULT.temperature.value,
     "any, or deterministic: cache only requests with temperature 0 or a seed."),
    ("scan_secrets", bool, _DEFAULT.scan_secrets,
     "Never record a request whose content carries a credential (API keys, AWS "
     "keys, private keys, bearer tokens, password= assignments)."),
    ("samples", int, _DEFAULT.samples,
     "Record up to N responses per request; the n-th identical request of a run gets the "
     "n-th recorded response, then they wrap."),
    ("ignore_fields", Sequence[str], [], "Further body fields left out of keys, as paths (metadata.user_id, "
     "input[*].id); metadata, user, prompt_cache_key, safety_identifier, store, service_tier, user_prompt_id "
     "and request.session_id always are."),
    ("normalise", Sequence[str], [], "Regular expressions whose matches in request text are replaced before "
     "keying (timestamps, temp paths, UUIDs)."),
    ("portable", bool, _DEFAULT.key_rules.portable,
     "Agent profiles leave dates, the working directory and HOME out of keys, so a run recorded on one "
     "machine and day replays on another. Off: they are keyed."),
    ("profiles", str, "",
     "Agent profiles added to or overriding the built-in ones (claude-code, codex, gemini-cli): YAML "
     "text, or the path of a .yaml file. See the README's Agents section."),
    ("scope", str, _DEFAULT.scope.value,
     "global (one shared cache) or credential (entries kept apart per API key, by an "
     "HMAC of it; never the key itself)."),
    ("compat_headers", bool, _DEFAULT.compat_headers,
     "Also send the headers of the caches users switch from: X-Computer-Use-Cache, "
     "X-Code-Model-Cache and a Cachecore-style X-Cache with X-Cache-Age."),
    ("single_flight_wait", int, _DEFAULT.single_flight_wait,
     "Seconds identical fresh requests wait for the first of them, in flight, to be answered, instead of "
     "each going upstream; 0 sends every one upstream."),
    ("lookup_timeout_ms", int, _DEFAULT.lookup_timeout_ms,
     "Milliseconds a lookup in a database across the network (PostgreSQL) may take; a request whose "
     "lookup takes longer goes upstream uncached, with a log line. SQLite lookups are local."),
    ("write_retry", int, _DEFAULT.write_retry,
     "Seconds a write that failed for a reason that may pass (a locked database, a full disk, a read-only "
     "file system, a server that went away) is tried again before the entry is given up, and logged as lost."),
    ("refuse_websocket", bool, _DEFAULT.refuse_websocket,
     "Answer a WebSocket upgrade to a /responses endpoint (the Codex CLI tries one first) with HTTP 426, "
     "so the client falls back to HTTP and SSE, which is cached."),
)
OPTION_NAMES = tuple(f"llm_cache_{name}" for name, *_ in OPTIONS)


class LLMCache:
    def __init__(self) -> None:
        self.store: cache_models.CacheStore | None = None
        self.db_url = ""
        self.settings = _DEFAULT
        self._reopen_at = 0.0
        self._memo = _memo_for(self.settings)
        self._failures = FailureLog()
        self._seen: dict[str, int] = {}  # identical requests this run, per key (llm_cache_samples > 1)
        self._stale: dict[str, Record] = {}  # flow id -> expired entry, for stale-if-error
        self._loop: asyncio.AbstractEventLoop | None = None
        self._opening = False  # a thread is opening the store
        self._near_miss_logged = -NEAR_MISS_LOG_EVERY  # when a near miss was last logged
        self._near_misses_unsaid = 0
        self._reader: ThreadPoolExecutor | None = None  # lookups in a database across the network
        self._just_stored: OrderedDict[str, http.HTTPFlow] = OrderedDict()  # entry key -> its flow, the newest
        self._flights = Flights()  # identical fresh requests in flight

    def load(self, loader) -> None:
        loader.add_option(
            "llm_cache_db", str, DEFAULT_DB,
            "Peewee database URL of the cache: sqlite:///FILE (a relative FILE is resolved against "
            "mitmproxy's confdir) or postgresql://USER:PASSWORD@HOST:PORT/DB.",
        )
        for name, typespec, default, help_text in OPTIONS:
            loader.add_option(f"llm_cache_{name}", typespec, default, help_text)

    def configure(self, updated: set[str]) -> None:
        if updated.intersection(OPTION_NAMES):
            try:
                values = {name: getattr(ctx.options, f"llm_cache_{name}") for name, *_ in OPTIONS}
                settings = policy.settings_from(values)
            except ValueError as e:
                raise exceptions.OptionsError(str(e)) from e
            if _memo_config(settings) != _memo_config(self.settings):
                self._memo = _memo_for(settings)
            self.settings = settings
            if self.store is not None:
                self.store.set_rules(settings.key_rules)
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
            if url.startswith("sqlite:"):
                self._open()  # a local file, opened before the proxy serves
            else:
                self._store()  # a server: opened on a thread, the proxy passes requests through meanwhile

    def running(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.create_task(self._flights.relay.start())
        # Everything loaded by now lives as long as the process. Frozen, the collector stops
        # rescanning it: a full collection in mitmdump took ~35 ms of loop time under load, ~2 ms after.
        gc.freeze()
        ca = os.path.abspath(os.path.join(os.path.expanduser(ctx.options.confdir), "mitmproxy-ca-cert.pem"))
        proxy = f"http://{ctx.options.listen_host or '127.0.0.1'}:{self._listen_port()}"
        logger.info(
            "llm-cache: caching LLM calls in %s (mode %s). Point an agent at it with:\n"
            "    export HTTPS_PROXY=%s HTTP_PROXY=%s SSL_CERT_FILE=%s NODE_EXTRA_CA_CERTS=%s "
            "REQUESTS_CA_BUNDLE=%s NODE_USE_ENV_PROXY=1; unset NO_PROXY no_proxy",
            cache_models.redact_url(self.db_url), self.settings.mode, proxy, proxy, ca, ca, ca,
        )

    def done(self) -> None:
        self._close()
        self._flights.relay.close()
        if self._reader is not None:
            self._reader.shutdown(wait=False, cancel_futures=True)

    # -- the request path ---------------------------------------------------------------------

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live or self.settings.mode is policy.Mode.OFF:
            return
        request = flow.request
        method, path = request.method, request.path
        if method == "GET":
            upgrade = _header(request.headers, b"upgrade")
            if self.settings.refuse_websocket and is_websocket_upgrade(method, path, upgrade):
                self._refuse_websocket(flow)
            return
        route = route_for(method, path, _header(request.headers, b"content-type"))
        if route is None:
            return
        fields = _text_fields(request.headers)
        query = request.query.items(multi=True) if "?" in path else ()
        try:
            target = keys.make_target(method, request.scheme, request.host, request.port, path, query, fields)
        except ValueError as e:  # a keyed header that is not UTF-8: not ours to judge
            self._failures.passed_through("reading the request headers", e)
            return
        controls = read_controls(fields)
        if has_own_headers(name for name, _ in fields):  # the cache's business only: no provider sees them
            for name in OWN_HEADERS:
                request.headers.pop(name, None)
        named = {n.lower(): v for n, v in fields}
        profile = self.settings.key_rules.profiles.recognise(route.family, named)
        flow.metadata[META] = state = {  # plain data: flows are saved with it
            "route": route, "target": target, "controls": controls, "profile": profile,
            "user_agent": named.get("user-agent", ""),
            "partition": self._partition(controls.namespace, fields, query),
        }
        if route.family in PASSED_THROUGH:
            state.update(status=Status.BYPASS, reason=PASSED_THROUGH[route.family])

    def request(self, flow: http.HTTPFlow) -> Coroutine[Any, Any, None] | None:
        if flow.response or flow.error or not flow.live:
            return None
        state = flow.metadata.get(META)
        if state is None or "status" in state:  # not ours, or already decided from the headers
            return None
        store = self._store()
        if store is None:
            del flow.metadata[META]
            return None
        settings, family = self.settings, state["route"].family
        try:
            raw = _content(flow.request, settings.max_request_bytes)
        except TooLarge:  # decoding stopped at the limit: a compression bomb is never inflated whole
            reason = f"request over llm_cache_max_request_bytes ({settings.max_request_bytes} bytes)"
            state.update(status=Status.BYPASS, reason=reason)
            return None
        except ValueError as e:  # an encoding that does not decode: not ours to judge
            self._failures.passed_through("reading the request body", e)
            del flow.metadata[META]
            return None
        try:
            facts = self._memo.facts(state["route"], raw, state["profile"])
            if facts is not None and facts.has_controls:
                flow.request.content = keys.without_controls(raw)  # a provider must never see "cache": false
        except Exception as e:  # undecodable, not JSON, nested past any sane depth: not ours to judge
            self._failures.passed_through("reading the request body", e)
            facts = None
        if facts is None:  # not JSON of the expected shape: not an LLM call after all
            del flow.metadata[META]
            return None
        controls = state["controls"]
        plan = plan_for(settings, controls, facts, family=family, host=state["target"].host)
        if plan.bypass:
            state.update(status=Status.BYPASS, reason=plan.bypass)
            return None
        key = keys.cache_key(state["target"], facts.digest, state["partition"])
        wire = state["route"].stream_wire if facts.stream else Wire.JSON
        state.update(key=key, model=facts.model, stream=facts.stream, wire=wire, include_usage=facts.include_usage,
                     skip_store=plan.skip_store, secret=facts.secret)
        now = time.time()
        nth = self._nth(key)

        def look_up() -> Found:
            if not plan.look_up:
                return Found(None, None, nth % settings.samples)
            find = store.find_json if wire is Wire.JSON else store.find
            return find_entry(find, key, nth=nth, samples=settings.samples, can_record=plan.skip_store is None,
                              is_expired=lambda record: is_expired(record, now, settings, controls))

        def then(found: Found) -> Coroutine[Any, Any, None] | None:
            return self._decide(flow, store, found, facts, plan, now)

        if store.remote:
            return self._look_up_far(flow, look_up, then)
        try:
            found = look_up()
        except Exception as e:
            self._failures.passed_through("the cache lookup", e)
            del flow.metadata[META]
            return None
        return then(found)

    async def _look_up_far(self, flow: http.HTTPFlow, look_up: Callable[[], Found],
                           then: Callable[[Found], Coroutine[Any, Any, None] | None]) -> None:
        """A database across the network is looked up on threads of its own, within
        llm_cache_lookup_timeout_ms: a frozen or unreachable server never holds the event loop, and
        a request whose lookup takes longer goes upstream uncached."""
        if self._reader is None:
            self._reader = ThreadPoolExecutor(2, thread_name_prefix="llm-cache-lookup")
        limit = self.settings.lookup_timeout_ms / 1000
        try:
            found = await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(self._reader, look_up), limit)
        except TimeoutError:
            self._failures.passed_through("the cache lookup", f"no answer within {self.settings.lookup_timeout_ms} ms")
            del flow.metadata[META]
            return
        except Exception as e:
            self._failures.passed_through("the cache lookup", e)
            del flow.metadata[META]
            return
        more = then(found)
        if more is not None:
            await more

    def _decide(self, flow: http.HTTPFlow, store: cache_models.CacheStore, found: Found, facts: keys.BodyFacts,
                plan: Plan, now: float) -> Coroutine[Any, Any, None] | None:
        """Answer a hit, fail a replay miss loudly, or let a miss go upstream."""
        state, settings = flow.metadata[META], self.settings
        family = state["route"].family
        try:
            answer = None
            if found.fresh is not None:
                answer = answers.replay(found.fresh, family, want=state["wire"], include_usage=facts.include_usage)
        except Exception as e:
            self._failures.passed_through("the cache lookup", e)
            del flow.metadata[META]
            return None
        if found.fresh is not None and answer is not None:
            self._answer(flow, Status.HIT, answer, found.fresh, now)
            store.touch(found.fresh.key, now)
            return None
        state.update(status=Status.MISS, entry=found.key_of(state["key"]), sample=found.sample)
        if plan.replay_only:
            return self._replay_miss(flow, store, facts.model)
        if found.stale is not None and settings.stale_if_error:
            self._stale[flow.id] = found.stale
            return self._serve_stale_if_unreachable(flow)
        return self._lead_or_follow(flow, plan)

    # -- single flight: identical misses in flight share one upstream call -----------------------

    def _lead_or_follow(self, flow: http.HTTPFlow, plan: Plan) -> Coroutine[Any, Any, None] | None:
        """The first of identical fresh requests goes upstream (it leads); those that come while it
        is in flight wait for its answer, up to llm_cache_single_flight_wait, and are answered from
        it. If it fails or is not recorded, each goes upstream itself."""
        state = flow.metadata[META]
        if (not plan.look_up or plan.skip_store is not None or self.settings.samples > 1
                or not self.settings.single_flight_wait):  # only where an answer may come from the cache
            return None
        try:
            flight = self._flights.lead(state["entry"], state["wire"])
        except RuntimeError:  # hooks called outside an event loop (tests): no one to share with
            return None
        if flight is None:
            state["leads"] = True
            return None
        return self._follow(flow, flight)

    async def _follow(self, flow: http.HTTPFlow, flight: Flight) -> None:
        state = flow.metadata[META]
        got = await self._flights.follow(state["entry"], flight, state["wire"], self.settings.single_flight_wait)
        if got is None:  # the first one failed, or was not recorded: this one goes upstream too
            return
        if isinstance(got, Relayed):  # the first one's stream, live, from the relay
            request = flow.request
            state.update(status=Status.HIT, relayed_from=(request.scheme, request.host, request.port, request.path))
            request.scheme, request.host, request.port, request.path = "http", "127.0.0.1", got.port, f"/{got.name}"
            return
        answer = answers.replay(got, state["route"].family, want=state["wire"], include_usage=state["include_usage"])
        if answer is not None:
            self._answer(flow, Status.HIT, answer, got, time.time(), shared=True)

    def _release(self, state: dict, record: Record | None) -> None:
        """The leader's answer is known (or it failed): the requests that waited for it go on."""
        if state.pop("leads", False):
            self._flights.release(state["entry"], record)

    def _answer(self, flow: http.HTTPFlow, status: Status, answer: answers.Answer, record: Record, now: float,
                *, shared: bool = False) -> None:
        age = max(0, int(now - record.created_at))
        self._respond(flow, answer, status, key=record.key, age=age)
        flow.metadata[META]["status"] = status
        how = "the answer of an identical request in flight" if shared else f"age {age}s"
        _mark(flow, MARK_HIT, f"llm-cache {status} {record.key[:12]} {how}")

    def _respond(self, flow: http.HTTPFlow, answer: answers.Answer, status: Status, **details: Any) -> None:
        """Answer from the proxy, with the headers that say what the cache did."""
        headers = answer.headers + status_headers(status, compat=self.settings.compat_headers, **details)
        flow.response = _response(answer.status, answer.body, headers)

    def _replay_miss(self, flow: http.HTTPFlow, store: cache_models.CacheStore,
                     model: str) -> Coroutine[Any, Any, None] | None:
        """Fail loudly, naming the stored request that came closest and where it differs (the
        candidates read off the event loop, within the lookup limit, from a database across the network)."""
        state = flow.metadata[META]
        family, host = state["route"].family, state["target"].host
        if not store.remote:
            self._fail_replay_miss(flow, model, self._closest(flow, lambda: store.recent_requests(family, host)))
            return None

        async def far() -> None:
            if self._reader is None:
                self._reader = ThreadPoolExecutor(2, thread_name_prefix="llm-cache-lookup")
            try:
                read = asyncio.get_running_loop().run_in_executor(self._reader, store.recent_requests, family, host)
                rows = await asyncio.wait_for(read, self.settings.lookup_timeout_ms / 1000)
                closest = self._closest(flow, lambda: rows)
            except Exception as e:
                self._failures.passed_through("finding the closest stored request", str(e) or "it took too long")
                closest = "The stored requests could not be compared."
            self._fail_replay_miss(flow, model, closest)

        return far()

    def _closest(self, flow: http.HTTPFlow, rows: Callable[[], list[tuple[str, float, bytes]]]) -> str:
        state = flow.metadata[META]
        try:
            rules, family = self.settings.key_rules, state["route"].family
            body = canonical_form(keys.parse_json(_content(flow.request, self.settings.max_request_bytes)), rules,
                                  family=family, profile=state["profile"])
            candidates = ((key, created_at, unpack_request(packed, rules, family)["body"])
                          for key, created_at, packed in rows())
            return describe(nearest(body, candidates))
        except Exception as e:
            self._failures.passed_through("finding the closest stored request", e)
            return "The stored requests could not be compared."

    def _fail_replay_miss(self, flow: http.HTTPFlow, model: str, closest: str) -> None:
        state = flow.metadata[META]
        target = state["target"]
        replaying = self.settings.mode is policy.Mode.REPLAY
        why = "llm_cache_mode is replay" if replaying else "Cache-Control: only-if-cached"
        message = (f"llm-cache: this request ({model} at {target.url}) is not in the cache and {why}, so it was not "
                   f"sent upstream. {closest}")
        answer = answers.replay_miss(state["route"].family, message, only_if_cached=not replaying)
        self._respond(flow, answer, Status.MISS, key=state["key"], reason=why)
        state["status"] = "REPLAY_MISS"  # answered here: nothing for the response hooks to record
        _mark(flow, MARK_NOT_STORED, f"llm-cache MISS {state['key'][:12]} not in cache ({why})")

    def _refuse_websocket(self, flow: http.HTTPFlow) -> None:
        reason = "WebSocket upgrade refused (llm_cache_refuse_websocket); the client falls back to HTTP"
        self._respond(flow, answers.refused_websocket(), Status.BYPASS, reason=reason)
        _mark(flow, MARK_NOT_STORED, f"llm-cache BYPASS: {reason}")

    async def _serve_stale_if_unreachable(self, flow: http.HTTPFlow) -> None:
        """stale-if-error for an upstream that cannot be reached: mitmproxy turns a failed connect
        into a 502 of its own that no hook can replace, so look before it connects."""
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(flow.request.host, flow.request.port), PROBE_TIMEOUT
            )
            writer.close()
        except (OSError, TimeoutError) as e:
            record = self._stale.pop(flow.id, None)
            if record is not None and self._serve_stale(flow, record):
                logger.info("llm-cache: %s unreachable (%s); served a stale entry", flow.request.host, e)

    def _serve_stale(self, flow: http.HTTPFlow, record: Record) -> bool:
        state = flow.metadata[META]
        answer = answers.replay(record, state["route"].family, want=state["wire"], include_usage=state["include_usage"])
        if answer is None:
            return False
        self._answer(flow, Status.STALE, answer, record, time.time())
        return True

    # -- the response path --------------------------------------------------------------------

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        state = flow.metadata.get(META)
        response = flow.response
        if state and response is not None and "relayed_from" in state:
            self._relayed(flow, state)
            return
        if not state or response is None or state.get("status") not in (Status.MISS, Status.BYPASS):
            return
        status = state["status"]
        _add_headers(response.headers, status_headers(status, key=state.get("entry"), reason=state.get("reason"),
                                                      compat=self.settings.compat_headers))
        success = 200 <= response.status_code < 300
        # A stream by its type, or (Gemini's JSON array) because the request asked for one.
        if not answers.is_stream_type(_header(response.headers, b"content-type")) and not (
                success and state.get("stream")):
            return
        if status is Status.MISS and success and not state.get("skip_store"):
            encoding = _header(response.headers, b"content-encoding")
            listener = None
            if state.get("leads"):  # identical requests waiting for this one get its stream live
                fields = [(n, v) for n, v in response.headers.fields if not is_status_header(n.decode("latin-1"))]
                listener = self._flights.streaming(state["entry"], response.status_code, fields)
            response.stream = StreamTee(encoding, self.settings.max_response_bytes, listener)
        else:
            response.stream = True  # not recorded: still forwarded piece by piece, as mitmproxy would not

    def _relayed(self, flow: http.HTTPFlow, state: dict) -> None:
        """A follower's answer from the relay: the request shows where it was going again, and
        the answer says what the cache did."""
        assert flow.response is not None
        request = flow.request
        request.scheme, request.host, request.port, request.path = state["relayed_from"]
        _add_headers(flow.response.headers, status_headers(Status.HIT, key=state["entry"], age=0,
                                                          compat=self.settings.compat_headers))
        flow.response.stream = True
        _mark(flow, MARK_HIT, f"llm-cache HIT {state['entry'][:12]} the live stream of an identical request in flight")

    def response(self, flow: http.HTTPFlow) -> Coroutine[Any, Any, None] | None:
        state = flow.metadata.get(META)
        if not state or state.get("status") != Status.MISS or flow.response is None:
            return None
        stale = self._stale.pop(flow.id, None)
        if stale is not None and flow.response.status_code in STALE_STATUSES and self._serve_stale(flow, stale):
            self._release(state, None)
            return None
        outcome = self._record(flow, state)
        self._release(state, None)  # a leader that recorded its answer has shared it already
        if isinstance(flow.response.stream, StreamTee):  # a streamed answer's headers are gone: mitmweb says it
            self._recorded(flow, state, outcome if isinstance(outcome, str) else self._later(flow, state, outcome))
            return None
        if isinstance(outcome, str):
            self._answered(flow, state, outcome)
            return None
        return self._answer_when_stored(flow, state, outcome)

    async def _answer_when_stored(self, flow: http.HTTPFlow, state: dict, stored: Future[str]) -> None:
        """`X-LLM-Cache-Store: stored` means written: the answer waits for the commit (a few ms), up
        to STORE_WAIT, then says what is known ("queued …") and mitmweb's comment the rest."""
        store = self.store
        if store is not None and store.retrying:  # the writer is stuck on a cause: no answer waits for it
            self._answered(flow, state, self._later(flow, state, stored))
            return
        try:
            outcome = await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(stored)), STORE_WAIT)
        except TimeoutError:
            outcome = self._later(flow, state, stored)
        self._answered(flow, state, outcome)

    def _answered(self, flow: http.HTTPFlow, state: dict, outcome: str) -> None:
        assert flow.response is not None
        _add_headers(flow.response.headers, store_headers(outcome, compat=self.settings.compat_headers))
        self._recorded(flow, state, outcome)

    def _later(self, flow: http.HTTPFlow, state: dict, stored: Future[str]) -> str:
        """What to say of an entry not written yet; its comment is brought up to date when it is
        (the future is settled on a helper thread: the update runs on the event loop)."""
        def update(outcome: str) -> None:
            self._recorded(flow, state, outcome)
            ctx.master.addons.trigger(UpdateHook([flow]))

        loop = self._loop
        if loop is not None:
            stored.add_done_callback(lambda done: loop.call_soon_threadsafe(update, done.result()))
        else:  # hooks called outside mitmproxy (tests): no event loop to hand the update to
            stored.add_done_callback(lambda done: self._recorded(flow, state, done.result()))
        store = self.store
        why = store.retrying if store is not None and store.retrying else "the writer has not committed it yet"
        return f"queued: not written yet ({why})"

    def error(self, flow: http.HTTPFlow) -> None:
        """A stream can end in an error after its answer is complete: the Codex CLI resets its HTTP/2
        stream as soon as it has `response.completed`, before the upstream body ends. A stream whose
        terminal event passed is stored all the same; one that never reached it never is."""
        self._stale.pop(flow.id, None)
        state = flow.metadata.get(META)
        if (state and state.get("status") == Status.MISS and "store" not in state and flow.response is not None
                and isinstance(flow.response.stream, StreamTee)):
            outcome = self._record(flow, state, ended_early=True)
            self._recorded(flow, state, outcome if isinstance(outcome, str) else self._later(flow, state, outcome))
        if state:
            self._release(state, None)

    def _recorded(self, flow: http.HTTPFlow, state: dict, outcome: str) -> None:
        state["store"] = outcome
        mark = MARK_STORED if outcome == "stored" else MARK_NOT_STORED
        near = flow.comment.partition("\nnear miss: ")[2]  # a near miss may have been noted first
        _mark(flow, mark, f"llm-cache MISS {state['key'][:12]} {outcome}" + (f"\nnear miss: {near}" if near else ""))

    def _record(self, flow: http.HTTPFlow, state: dict, *, ended_early: bool = False) -> str | Future[str]:
        """Hand a complete success to the store: what became of it (as X-LLM-Cache-Store says it),
        or a future of it once the writer has committed it."""
        response = flow.response
        assert response is not None
        if state["skip_store"]:
            return f"skipped: {state['skip_store']}"
        store = self._store()
        if store is None:
            return "skipped: cache unavailable"
        family = state["route"].family
        tee = response.stream if isinstance(response.stream, StreamTee) else None
        try:
            if tee is not None:
                if tee.problem or not (tee.finished or ended_early):
                    return f"skipped: {tee.problem or 'stream did not finish'}"
                body = bytes(tee.body)
                if ended_early and (problem := answers.early_end_problem(family, body)):
                    return f"skipped: {problem}"
            else:
                limit = self.settings.max_response_bytes
                try:
                    body = _content(response, limit)
                except TooLarge:
                    return f"skipped: response over llm_cache_max_response_bytes ({limit} bytes)"
            fields = _text_fields(response.headers)
            wire = answers.wire_of(_header(response.headers, b"content-type"), requested=state["wire"])
            is_stream = wire is not Wire.JSON
            try:
                headers, body = answers.stored_form(family, wire, fields, body)
            except ValueError:
                return "skipped: stream did not parse"
            problem = answers.storage_problem(family, response.status_code, body, is_stream=is_stream)
            if problem:
                return f"skipped: {problem}"
            if len(body) > self.settings.max_response_bytes:
                return f"skipped: response over llm_cache_max_response_bytes ({len(body)} bytes)"
            if state["secret"]:
                return f"skipped: the request carries {state['secret']}"
            request_body = _content(flow.request, self.settings.max_request_bytes)
            now = time.time()
            controls = state["controls"]
            self._remember(state["entry"], flow)
            record = answers.make_record(
                key=state["entry"], family=family, target=state["target"], model=state["model"],
                request_body=request_body, status=response.status_code,
                headers=headers, body=body, is_stream=is_stream, now=now,
                expires_at=now + controls.ttl if controls.ttl else None, sample=state["sample"], tags=controls.tags,
                profile=state["profile"], user_agent=state["user_agent"],
            )
            stored = store.put(record)
            self._release(state, record)
        except RuntimeError as e:  # the writer is far behind: this one is not recorded
            self._failures.passed_through("recording the response", e)
            return f"skipped: {e}"
        except Exception as e:
            self._failures.passed_through("recording the response", e)
            return f"skipped: {type(e).__name__}"
        return stored

    def _nth(self, key: str) -> int:
        """How many identical requests this run has seen before this one (only counted for samples)."""
        if self.settings.samples == 1:
            return 0
        nth = self._seen.get(key, 0)
        self._seen[key] = nth + 1
        return nth

    def _partition(self, namespace: str, fields: list[tuple[str, str]], query: Sequence[tuple[str, str]]) -> str:
        """Which part of the cache a request belongs to: its namespace, and in the credential scope
        an HMAC of every credential it carries (the secret lives in the cache, so the HMAC cannot be
        reversed)."""
        parts = [f"ns:{namespace}"] if namespace else []
        if self.settings.scope is policy.Scope.CREDENTIAL and (store := self._store()) is not None:
            parts.append(f"cred:{store.credential_tag(credentials(fields, query))}")
        return "|".join(parts)

    # -- commands -----------------------------------------------------------------------------

    @command.command("llmcache.stats")
    def stats(self) -> str:
        """Entries, hits and bytes per endpoint family."""
        return orjson.dumps(self._require_store().stats(), option=orjson.OPT_INDENT_2).decode()

    @command.command("llmcache.clear")
    def clear(self) -> int:
        """Delete every cache entry; returns how many were deleted."""
        return self._require_store().clear()

    @command.command("llmcache.invalidate")
    def invalidate(self, tag: str) -> int:
        """Delete every entry recorded with this tag (X-LLM-Cache-Tags); returns how many."""
        return self._require_store().invalidate(tag=tag)

    @command.command("llmcache.invalidate_model")
    def invalidate_model(self, model: str) -> int:
        """Delete every entry of this model; returns how many."""
        return self._require_store().invalidate(model=model)

    @command.command("llmcache.invalidate_host")
    def invalidate_host(self, host: str) -> int:
        """Delete every entry recorded for this host; returns how many."""
        return self._require_store().invalidate(host=host)

    @command.command("llmcache.explain")
    def explain(self, key: str) -> str:
        """Why an entry (a key, or its first characters) was a miss: the stored request of the same
        endpoint and model it came closest to, what differs, and the config.yaml text of a rule that
        would have made it a hit."""
        try:
            found = self._require_store().explain(key)
        except KeyError as e:
            raise exceptions.CommandError(str(e.args[0])) from e
        if found is None:
            return f"entry {key}: no other stored request of its endpoint and model differs from it"
        miss, rule = found
        return f"{miss.describe()}\n\nA rule that makes it a hit (config.yaml):\n\n{rule}"

    # -- near misses ----------------------------------------------------------------------------

    def _remember(self, key: str, flow: http.HTTPFlow) -> None:
        """The flows of the newest recorded misses, for their near-miss comment."""
        self._just_stored[key] = flow
        while len(self._just_stored) > NEAR_MISS_FLOWS:
            self._just_stored.popitem(last=False)

    def _near_miss(self, miss: NearMiss) -> None:
        """A newly stored entry came close to a stored one (the writer found it; a helper thread calls).
        Every one goes into its flow's comment; the log gets at most one per NEAR_MISS_LOG_EVERY
        seconds, saying how many it left out, so recording a thousand similar requests is not a
        thousand log lines."""
        now = time.monotonic()
        if now >= self._near_miss_logged + NEAR_MISS_LOG_EVERY:
            unsaid = f" ({self._near_misses_unsaid} more since the last one: see mitmweb's comments)" if \
                self._near_misses_unsaid else ""
            logger.info("llm-cache: %s (llmcache.explain %s gives a rule that makes it a hit)%s", miss.describe(),
                        miss.key[:12], unsaid)
            self._near_miss_logged, self._near_misses_unsaid = now, 0
        else:
            self._near_misses_unsaid += 1
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._comment_near_miss, miss)

    def _comment_near_miss(self, miss: NearMiss) -> None:
        flow = self._just_stored.pop(miss.key, None)
        if flow is not None:
            flow.comment += f"\n{miss.describe()}"
            ctx.master.addons.trigger(UpdateHook([flow]))

    # -- the store's life ---------------------------------------------------------------------

    def _store(self) -> cache_models.CacheStore | None:
        """The store, or None while it is unavailable: it is opened again, on a thread of its own
        (an unreachable server never holds the event loop), every REOPEN_AFTER seconds."""
        if self.store is None and self.db_url and not self._opening and time.monotonic() >= self._reopen_at:
            self._opening = True
            threading.Thread(target=self._open, name="llm-cache-open", daemon=True).start()
        return self.store

    def _require_store(self) -> cache_models.CacheStore:
        store = self._store()
        if store is None:
            raise exceptions.CommandError(f"the cache database {cache_models.redact_url(self.db_url)} is unavailable")
        return store

    def _open(self) -> None:
        try:
            self.store = cache_models.CacheStore(self.db_url, self.settings.key_rules, self._near_miss,
                                                 write_retry=self.settings.write_retry)
        except Exception as e:
            self.store = None
            self._reopen_at = time.monotonic() + REOPEN_AFTER
            self._failures.passed_through(f"opening the cache database {cache_models.redact_url(self.db_url)}", e)
        else:
            logger.info("llm-cache: cache database %s", cache_models.redact_url(self.db_url))
        finally:
            self._opening = False

    def _close(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None

    def _listen_port(self) -> int:
        server = ctx.master.addons.get("proxyserver")
        for address in getattr(server, "listen_addrs", lambda: [])():
            return address[1]
        return ctx.options.listen_port or 8080


def _memo_config(settings: policy.Settings) -> tuple[Any, bool]:
    """What the request facts depend on: the key rules, and whether bodies are scanned for secrets
    (only when they may be recorded)."""
    return settings.key_rules, settings.scan_secrets and settings.mode.records


def _memo_for(settings: policy.Settings) -> keys.BodyMemo:
    rules, scan = _memo_config(settings)
    return keys.BodyMemo(rules=rules, scanner=SecretScanner() if scan else None)


# Answers are built here, not by `http.Response.make`: mitmproxy type-checks every field of a new
# message with typing introspection (MessageData.__post_init__, whenever Python runs without -O),
# and `make` then sets the body through the content-encoding machinery and a header rebuild. That
# was ~50 us, a third of a hit's time in our hooks. A copy of a made response's data skips both;
# tests/addon/test_addon.py pins that the result equals what `make` gives.
_MADE = http.Response.make(200)


def _response(status: int, body: bytes, headers: list[tuple[str, str]]) -> http.Response:
    fields = [(name.encode(), value.encode()) for name, value in headers]
    if any(name.lower() in (b"content-encoding", b"transfer-encoding") for name, _ in fields):
        return http.Response.make(status, body, http.Headers(fields))  # make encodes or frames the body
    fields.append((b"content-length", b"%d" % len(body)))
    data = copy.copy(_MADE.data)
    data.status_code, data.reason = status, status_codes.RESPONSES.get(status, "").encode()
    data.headers, data.content = http.Headers(fields), body
    data.timestamp_start = data.timestamp_end = time.time()
    response = http.Response.__new__(http.Response)
    response.data = data
    return response


# mitmproxy's Headers lower-case and re-encode every field on each lookup and rebuild them all on
# each assignment: ~5 us a call, and a miss made a dozen. These read and write the fields directly.

def _text_fields(headers: http.Headers) -> list[tuple[str, str]]:
    """All fields as text, decoded as mitmproxy decodes them."""
    return [(name.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape"))
            for name, value in headers.fields]


def _header(headers: http.Headers, name: bytes) -> str:
    """The first value of a field (`name` lower-case), or ""."""
    for field, value in headers.fields:
        if field.lower() == name:
            return value.decode("utf-8", "surrogateescape")
    return ""


def _content(message: http.Message, limit: int) -> bytes:
    """The decoded body, decoded within `limit` bytes (llm_cache.decode): raises TooLarge past it,
    ValueError when the encoding does not decode. Most bodies are not encoded: they are read as they are."""
    raw = message.raw_content or b""
    encoding = _header(message.headers, b"content-encoding")
    if encoding:
        return decode(raw, encoding, limit)
    if len(raw) > limit:
        raise TooLarge(f"{len(raw)} bytes")
    return raw


def _add_headers(headers: http.Headers, added: list[tuple[str, str]]) -> None:
    """Set these fields, replacing any of the same names, in one rebuild."""
    names = {name.lower().encode() for name, _ in added}
    headers.fields = tuple(field for field in headers.fields if field[0].lower() not in names) + tuple(
        (name.encode(), value.encode("utf-8", "surrogateescape")) for name, value in added)


def _mark(flow: http.HTTPFlow, mark: str, comment: str) -> None:
    """What a mitmweb user sees: filter `~marked` for the cache's work."""
    flow.marked = mark
    flow.comment = comment


addons = [LLMCache()]

"""Every option of the cache, once: its name, type, default and help. addon.py declares them to
mitmproxy, `settings_from_values` parses them into policy.Settings (whose defaults these are), and
tests/unit/test_options.py checks that config.yaml's comments and the README's table say the same."""

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from llm_cache import policy
from llm_cache.guards import Guard

PREFIX = "llm_cache_"
DEFAULT_DB = "sqlite:///llm-cache.sqlite3"
_DEFAULT = policy.Settings()  # the parsed defaults live there


class Option(NamedTuple):
    name: str  # without PREFIX
    type: Any
    default: Any
    help: str
    choices: Sequence[str] | None = None  # mitmweb and the console offer these as a list

    @property
    def full_name(self) -> str:
        return PREFIX + self.name


DB = Option(
    "db", str, DEFAULT_DB,
    "Peewee database URL of the cache: sqlite:///FILE (a relative FILE is resolved against "
    "mitmproxy's confdir) or postgresql://USER:PASSWORD@HOST:PORT/DB.")

# The options policy.settings_from parses, in the order the README lists them.
SETTINGS: tuple[Option, ...] = (
    Option("mode", str, _DEFAULT.mode.value,
           "record (answer hits, record misses), replay (never go upstream: a miss is a 400 "
           "naming the closest stored request), refresh (always go upstream and overwrite), readonly (never "
           "write), writeonly (never answer from the cache) or off.", [mode.value for mode in policy.Mode]),
    Option("ttl", int, _DEFAULT.ttl,
           "Seconds an entry is served for; 0 = forever. A request may set its own with X-LLM-Cache-TTL."),
    Option("stale_if_error", bool, _DEFAULT.stale_if_error,
           "Serve an expired entry (X-LLM-Cache: STALE) when the upstream answers 429/5xx or cannot be reached."),
    Option("allow_hosts", Sequence[str], [], "Cache only these hosts (shell globs, e.g. *.openai.com); empty = all."),
    Option("deny_hosts", Sequence[str], [], "Never cache these hosts (shell globs)."),
    Option("allow_models", Sequence[str], [], "Cache only these models (shell globs); empty = all."),
    Option("deny_models", Sequence[str], [], "Never cache these models (shell globs)."),
    Option("allow_families", Sequence[str], [], "Cache only these endpoint families (e.g. openai.*); empty = all."),
    Option("deny_families", Sequence[str], [], "Never cache these endpoint families (e.g. openai.embeddings)."),
    Option("max_request_bytes", int, _DEFAULT.max_request_bytes, "Larger requests pass through uncached."),
    Option("max_response_bytes", int, _DEFAULT.max_response_bytes,
           "Larger responses are passed on but not recorded."),
    Option("max_size", int, _DEFAULT.max_size,
           "Bytes the cache may hold (answers and requests); past it the least recently used entries are "
           "evicted, checked every 30 s. 0: no bound. Expired entries are deleted unless stale-if-error is on."),
    Option("temperature", str, _DEFAULT.temperature.value,
           "any, or deterministic: cache only requests with temperature 0 or a seed.",
           [temperature.value for temperature in policy.Temperature]),
    Option("scan_secrets", bool, _DEFAULT.scan_secrets,
           "Never record a request whose content carries a credential (API keys, AWS keys, private keys, "
           "bearer tokens, password= assignments)."),
    Option("samples", int, _DEFAULT.samples,
           "Record up to N responses per request; the n-th identical request of a run gets the n-th recorded "
           "response, then they wrap."),
    Option("ignore_fields", Sequence[str], [],
           "Further body fields left out of keys, as paths (metadata.user_id, input[*].id); metadata, user, "
           "prompt_cache_key, safety_identifier, store, service_tier, user_prompt_id and request.session_id "
           "always are."),
    Option("normalise", Sequence[str], [],
           "Regular expressions whose matches in request text are replaced before keying (timestamps, temp "
           "paths, UUIDs)."),
    Option("portable", bool, _DEFAULT.key_rules.portable,
           "Agent profiles leave dates, the working directory and HOME out of keys, so a run recorded on one "
           "machine and day replays on another. Off: they are keyed."),
    Option("profiles", str, "",
           "Agent profiles added to or overriding the built-in ones (claude-code, codex, gemini-cli): YAML "
           "text, or the path of a .yaml file. See the README's Agents section."),
    Option("scope", str, _DEFAULT.scope.value,
           "global (one shared cache) or credential (entries kept apart per API key, by an HMAC of it; never "
           "the key itself).", [scope.value for scope in policy.Scope]),
    Option("compat_headers", bool, _DEFAULT.compat_headers,
           "Also send the headers of the caches users switch from: X-Computer-Use-Cache, X-Code-Model-Cache "
           "and a Cachecore-style X-Cache with X-Cache-Age."),
    Option("refuse_websocket", bool, _DEFAULT.refuse_websocket,
           "Answer a WebSocket upgrade to a /responses endpoint (the Codex CLI tries one first) with HTTP 426, "
           "so the client falls back to HTTP and SSE, which is cached."),
    Option("upstream_keys", Sequence[str], [],
           "HOST_GLOB=ENV_VAR rules (api.openai.com=OPENAI_REAL_KEY): requests that go upstream to a matching "
           "host carry the variable's key instead of the one their client sent, so agents run with dummy keys. "
           "The key is never stored, logged, or sent to another host."),
    Option("refresh_date", bool, _DEFAULT.refresh_date,
           "Give a hit today's Date header, as mitmproxy's server replay does; off: the recorded one."),
    Option("single_flight_wait", int, _DEFAULT.single_flight_wait,
           "Seconds identical fresh requests wait for the first of them, in flight, to be answered, instead of "
           "each going upstream; 0 sends every one upstream."),
    Option("lookup_timeout_ms", int, _DEFAULT.lookup_timeout_ms,
           "Milliseconds a lookup in a database across the network (PostgreSQL) may take; a request whose "
           "lookup takes longer goes upstream uncached, with a log line. SQLite lookups are local."),
    Option("write_retry", int, _DEFAULT.write_retry,
           "Seconds a write that failed for a reason that may pass (a locked database, a full disk, a "
           "read-only file system, a server that went away) is tried again before the entry is given up, and "
           "logged as lost."),
    Option("dashboard_host", str, _DEFAULT.dashboard_host,
           "The host of the page the proxy serves itself (http://llm-cache.local/ through the proxy): hits and "
           "misses per day, tokens and money saved, recent entries; /api/stats.json the same as JSON. Empty: "
           "no page."),
    Option("dashboard_clients", Sequence[str], [],
           "Networks (CIDRs such as 10.0.0.0/8) whose clients may see the dashboard besides loopback ones; "
           "empty: loopback only."),
    Option("semantic", bool, False,
           "The semantic tier: a request whose last user turn says what a stored one's said, in a conversation "
           "otherwise identical (host, model, system prompt, tools, parameters, earlier turns), gets that answer "
           "(X-LLM-Cache: HIT-SEMANTIC). Off: exact hits only."),
    Option("semantic_threshold", str, "0.75",
           "The cosine similarity a stored turn must reach to answer (0 to 1)."),
    Option("semantic_guard", str, Guard.STRICT.value,
           "strict: the turns may differ only in framing, spelling and typos, with their words in the same order "
           "(0 wrong answers on the labelled set); marks: numbers, negations, names, code and directions must "
           "match; off: the vectors alone.", [guard.value for guard in Guard]),
    Option("semantic_embedder", str, "local",
           "local (WordLlama, its weights shipped in its wheel) or the URL of an OpenAI-compatible /v1/embeddings "
           "or Ollama /api/embed endpoint, called through this proxy (so cached too)."),
    Option("semantic_embedding_model", str, "text-embedding-3-small",
           "The model an embeddings endpoint is asked for (ignored by local)."),
    Option("semantic_tool_results", bool, False,
           "Also answer a request whose last turn is a tool result from a stored one that says the same."),
    Option("semantic_block_after", int, 3,
           "Reports of a wrong semantic answer (X-LLM-Cache-Semantic-Reject) after which an entry is never a "
           "semantic answer again (its exact repeats still are); 0: never blocked."),
    Option("synthesis", bool, False,
           "The synthesis tier (needs llm_cache_semantic): a request that misses, with stored turns above "
           "llm_cache_synthesis_threshold, is answered by llm_cache_synthesis_model from those question/answer "
           "pairs (X-LLM-Cache: SYNTHESISED); never stored as an entry."),
    Option("synthesis_url", str, "",
           "The OpenAI-compatible chat completions URL of the synthesising model, called through this proxy."),
    Option("synthesis_model", str, "", "The synthesising model (a cheap one)."),
    Option("synthesis_threshold", str, "0.7", "The cosine a stored turn must reach to be given to the model."),
    Option("synthesis_top_k", int, 5, "How many stored question/answer pairs the model is given, at most."),
)
OPTIONS: tuple[Option, ...] = (DB, *SETTINGS)
SETTINGS_NAMES = frozenset(option.full_name for option in SETTINGS)
DEFAULTS: dict[str, Any] = {option.name: option.default for option in SETTINGS}  # settings_from's input


def command_line_sets(argv: Sequence[str]) -> dict[str, list[str]]:
    """The `--set llm_cache_*=VALUE` of a mitmdump command line, by option (a list option may be set
    several times). mitmproxy applies config.yaml after the command line to options an addon
    declares (mitmproxy#5069); addon.py puts these back, so the command line wins as it does for
    mitmproxy's own options."""
    names = {option.full_name for option in OPTIONS}
    found: dict[str, list[str]] = {}
    for at, arg in enumerate(argv):
        spec = argv[at + 1] if arg == "--set" and at + 1 < len(argv) else arg.removeprefix("--set=")
        if spec is arg and not arg.startswith("--set="):
            continue
        name, _, value = spec.partition("=")
        if name in names:
            found.setdefault(name, []).append(value)
    return found


def settings_from_values(value_of: Callable[[str], Any]) -> policy.Settings:
    """Settings from the options' current values (`value_of` takes a full option name); raises
    ValueError with a message fit for the user."""
    return policy.settings_from({option.name: value_of(option.full_name) for option in SETTINGS})

"""Upstream key injection (computer-use-cache's UPSTREAM_API_KEY): agents run with dummy keys, and
the proxy puts the real one, read from an environment variable, into the requests that go upstream
to the hosts it is meant for.

`llm_cache_upstream_keys` holds `HOST_GLOB=ENV_VAR` rules. For a request that goes upstream to a
matching host, every credential it carries (Authorization's token, x-api-key, api-key,
x-goog-api-key, ?key=) is replaced by the variable's value, read when the request leaves (an
unset variable: nothing is replaced, one log line). The dummy values are put back as soon as the
answer's headers arrive (or the request fails), so the flow that mitmweb shows, mitmdump prints and
`-w` saves holds the dummy key, never the real one. Hits never go upstream, so they are never
given one; the key is never stored (entries hold no credential), logged, or sent to another host.
"""

import logging
import os
from collections.abc import Sequence
from fnmatch import fnmatchcase

from mitmproxy import http

from llm_cache.credentials import CREDENTIAL_HEADERS

logger = logging.getLogger(__name__)

# The providers' credential headers: Authorization's value is "<scheme> <key>", the others' the key.
_KEY_HEADERS = tuple(sorted(CREDENTIAL_HEADERS - {"authorization"}))
_QUERY_KEYS = ("key",)

Rules = tuple[tuple[str, str], ...]  # (host glob, environment variable)
Originals = list[tuple[str, str, str]]  # (where: "header" or "query", name, the value the client sent)


def parse(values: Sequence[str]) -> Rules:
    """`HOST_GLOB=ENV_VAR` items; raises ValueError with a message fit for the user."""
    rules = []
    for value in values:
        glob, _, variable = value.partition("=")
        if not glob.strip() or not variable.strip().isidentifier():
            raise ValueError(f"llm_cache_upstream_keys: {value!r} is not HOST_GLOB=ENV_VAR "
                             "(e.g. api.openai.com=OPENAI_REAL_KEY)")
        rules.append((glob.strip().lower(), variable.strip()))
    return tuple(rules)


class UpstreamKeys:
    def __init__(self) -> None:
        self._sent: dict[str, Originals] = {}  # flow id -> what the client sent, until it is put back
        self._unset_said: set[str] = set()

    def inject(self, flow: http.HTTPFlow, rules: Rules) -> None:
        """Put the real key into a request about to go upstream, if a rule names its host."""
        if not rules or flow.response is not None:
            return
        host = flow.request.host.lower()
        variable = next((variable for glob, variable in rules if fnmatchcase(host, glob)), None)
        if variable is None:
            return
        key = os.environ.get(variable)
        if not key:
            if variable not in self._unset_said:
                self._unset_said.add(variable)
                logger.warning("llm-cache: llm_cache_upstream_keys names %s for %s, but it is not set; "
                               "requests keep the key their client sent", variable, host)
            return
        sent = _replace(flow.request, key)
        if sent:
            self._sent[flow.id] = sent

    def put_back(self, flow: http.HTTPFlow) -> None:
        """The request has left: the flow holds the dummy key again."""
        sent = self._sent.pop(flow.id, None)
        if not sent:
            return
        request = flow.request
        for where, name, value in sent:
            if where == "header":
                request.headers[name] = value
            else:
                request.query[name] = value


def _replace(request: http.Request, key: str) -> Originals:
    sent: Originals = []
    authorization = request.headers.get("authorization")
    if authorization:
        scheme, _, _ = authorization.partition(" ")
        sent.append(("header", "authorization", authorization))
        request.headers["authorization"] = f"{scheme} {key}" if scheme.lower() in ("bearer", "token") else key
    for name in _KEY_HEADERS:
        if name in request.headers:
            sent.append(("header", name, request.headers[name]))
            request.headers[name] = key
    if "?" in request.path:
        for name in _QUERY_KEYS:
            if name in request.query:
                sent.append(("query", name, request.query[name]))
                request.query[name] = key
    return sent

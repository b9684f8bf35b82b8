"""llm-cache: a replay cache for LLM API calls, as a mitmproxy addon.

    mitmdump -s addon.py          (or scripts/run, which also loads ./config.yaml)

This file only adapts mitmproxy: options, hooks, commands. One request through it:
`requestheaders` -> serving.recognise (an LLM endpoint? its target, before other addons may rewrite
the URL) -> `request` -> serving.look_up (key the body, answer a hit from the store) -> on a miss,
`responseheaders` -> recording.responseheaders (tee a stream without delaying it) -> `response` ->
recording.response (validate the complete answer, hand it to the writer process, answer when it is
committed). Anything that fails on the way passes the flow through untouched (llm_cache.failures).
"""

import gc
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any, cast

from mitmproxy import command, contentviews, ctx, exceptions, http
from mitmproxy.hooks import UpdateHook
from mitmproxy.types import Data

import cache_models
from llm_cache import clients, dashboard, options, recording, serving
from llm_cache.answering import Later
from llm_cache.contentview import LLMContentview
from llm_cache.controls import read_deps
from llm_cache.policy import Mode
from llm_cache.runtime import Runtime
from llm_cache.status import stats_table
from llm_cache.stores import Unavailable

logger = logging.getLogger(__name__)


class LLMCache:
    def __init__(self) -> None:
        self.rt = Runtime(updated=lambda flow: ctx.master.addons.trigger(UpdateHook([flow])))

    @property
    def store(self) -> cache_models.CacheStore | None:
        return self.rt.stores.store

    def load(self, loader) -> None:
        # mitmproxy 12 has no way to unregister a view (contentviews.remove is a no-op kept for the
        # old View API); a reloaded addon registers it again under the same name, replacing it.
        contentviews.add(LLMContentview)
        for option in options.OPTIONS:
            loader.add_option(option.full_name, option.type, option.default, option.help, option.choices)
        # config.yaml's values wait in `deferred` to be applied after this; the command line's go first.
        wins = options.command_line_sets(sys.argv)
        for name, values in wins.items():
            config = ctx.options.deferred.pop(name, None)
            if config is not None and getattr(config, "val", config) != values:
                logger.info("llm-cache: --set %s on the command line wins over config.yaml", name)
        if wins:
            ctx.options.set(*(f"{name}={value}" for name, values in wins.items() for value in values))

    def configure(self, updated: set[str]) -> None:
        if updated.intersection(options.SETTINGS_NAMES):
            try:
                settings = options.settings_from_values(lambda name: getattr(ctx.options, name))
            except ValueError as e:
                raise exceptions.OptionsError(str(e)) from e
            self.rt.configure(settings)
        if "llm_cache_db" in updated or "confdir" in updated:
            try:
                url = cache_models.resolve_db_url(ctx.options.llm_cache_db, os.path.expanduser(ctx.options.confdir))
            except ValueError as e:
                raise exceptions.OptionsError(str(e)) from e
            self.rt.stores.use(url)

    def running(self) -> None:
        self.rt.running()
        # Everything loaded by now lives as long as the process. Frozen, the collector stops
        # rescanning it: a full collection in mitmdump took ~35 ms of loop time under load, ~2 ms after.
        gc.freeze()
        ca = os.path.abspath(os.path.join(os.path.expanduser(ctx.options.confdir), "mitmproxy-ca-cert.pem"))
        proxy = f"http://{ctx.options.listen_host or '127.0.0.1'}:{_listen_port()}"
        self.rt.proxy, self.rt.ca_file = proxy, ca
        exports = " ".join(f"{name}={value}" for name, value in clients.environment(proxy, ca).items())
        logger.info("llm-cache: caching LLM calls in %s (mode %s). Point an agent at it with:\n"
                    "    export %s; unset %s", self.rt.stores.redacted, self.rt.settings.mode, exports,
                    " ".join(clients.CLEARED))

    def done(self) -> None:
        self.rt.done()

    # -- hooks: each is one step of llm_cache.serving or llm_cache.recording ------------------------

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live or self.rt.settings.mode is Mode.OFF:
            return
        serving.recognise(self.rt, flow)

    def request(self, flow: http.HTTPFlow) -> Later:
        if flow.response or flow.error or not flow.live:
            return None
        if (answered := dashboard.serve(self.rt, flow)) is not None:
            return answered
        return serving.request(self.rt, flow)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        recording.responseheaders(self.rt, flow)

    def response(self, flow: http.HTTPFlow) -> Later:
        return recording.response(self.rt, flow)

    def error(self, flow: http.HTTPFlow) -> None:
        recording.error(self.rt, flow)

    # -- commands -----------------------------------------------------------------------------

    @command.command("llmcache.stats")
    def stats(self) -> Data:
        """Entries, hits and bytes per endpoint family, and what the writer did this run: a table."""
        return cast(Data, stats_table(self._store().stats()))  # Data: the marker type of a table

    @command.command("llmcache.clear")
    def clear(self) -> int:
        """Delete every cache entry; returns how many were deleted."""
        return self._store().clear()

    @command.command("llmcache.invalidate")
    def invalidate(self, tag: str) -> int:
        """Delete every entry recorded with this tag (X-LLM-Cache-Tags); returns how many."""
        return self._store().invalidate(tag=tag)

    @command.command("llmcache.invalidate_model")
    def invalidate_model(self, model: str) -> int:
        """Delete every entry of this model; returns how many."""
        return self._store().invalidate(model=model)

    @command.command("llmcache.invalidate_host")
    def invalidate_host(self, host: str) -> int:
        """Delete every entry recorded for this host; returns how many."""
        return self._store().invalidate(host=host)

    @command.command("llmcache.bump")
    def bump(self, dependency: str, version: str) -> str:
        """A dependency (X-LLM-Cache-Deps) has a new version: entries recorded under another are stale."""
        deps = read_deps(f"{dependency}={version}")
        if deps is None:
            raise exceptions.CommandError(f"not a dependency and version: {dependency}={version}")
        self._store().bump(dict(deps))
        return f"{dependency} is at {version}: entries recorded under another version are stale"

    @command.command("llmcache.reject")
    def reject(self, key: str) -> str:
        """Report an entry (a key, or its first characters) as a bad answer: it is deleted, and the
        request it answered goes upstream next time and is recorded anew. Returns its full key."""
        try:
            return self._store().reject_prefix(key)
        except KeyError as e:
            raise exceptions.CommandError(str(e.args[0])) from e

    @command.command("llmcache.explain")
    def explain(self, key: str) -> Sequence[str]:
        """Why an entry (a key, or its first characters) was a miss: the stored request of the same
        endpoint and model it came closest to, what differs, and the config.yaml text of a rule that
        would have made it a hit."""
        try:
            found = self._store().explain(key)
        except KeyError as e:
            raise exceptions.CommandError(str(e.args[0])) from e
        if found is None:
            return [f"entry {key}: no other stored request of its endpoint and model differs from it"]
        miss, rule = found
        return [miss.describe(), "", "A rule that makes it a hit (config.yaml):", "", *rule.splitlines()]

    def _store(self) -> cache_models.CacheStore:
        try:
            return self.rt.stores.require()
        except Unavailable as e:
            raise exceptions.CommandError(str(e)) from e


def _listen_port() -> Any:
    server = ctx.master.addons.get("proxyserver")
    for address in getattr(server, "listen_addrs", lambda: [])():
        return address[1]
    return ctx.options.listen_port or 8080


addons = [LLMCache()]

"""stale-if-error: an expired entry is served when the upstream answers 429/5xx or cannot be reached."""

import asyncio
import logging
import time

from mitmproxy import http

from llm_cache import answers
from llm_cache.answering import answer_from
from llm_cache.flowstate import META, FlowState
from llm_cache.records import Record
from llm_cache.runtime import Runtime
from llm_cache.status import Status

logger = logging.getLogger(__name__)


PROBE_TIMEOUT = 5.0  # seconds: stale-if-error's check that an upstream can be reached at all


async def serve_stale_if_unreachable(rt: Runtime, flow: http.HTTPFlow) -> None:
    """stale-if-error for an upstream that cannot be reached: mitmproxy turns a failed connect into
    a 502 of its own that no hook can replace, so look before it connects."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(flow.request.host, flow.request.port),
                                           PROBE_TIMEOUT)
        writer.close()
    except (OSError, TimeoutError) as e:
        record = rt.stale.pop(flow.id, None)
        if record is not None and serve_stale(rt, flow, record):
            logger.info("llm-cache: %s unreachable (%s); served a stale entry", flow.request.host, e)


def serve_stale(rt: Runtime, flow: http.HTTPFlow, record: Record) -> bool:
    state: FlowState = flow.metadata[META]
    answer = answers.replay(record, state["route"].family, want=state["wire"], include_usage=state["include_usage"])
    if answer is None:
        return False
    answer_from(rt, flow, Status.STALE, answer, record, time.time())
    return True

"""Test-only mitmproxy addon: appends every JSON POST the proxy receives, as the client sent it, to
the JSONL file named by `capture_file`: {"path", "user_agent", "body"}. No headers beyond the
User-Agent, so no credentials. The agent tests read it to show what differed between two runs.
Load it before addon.py, so it sees each request before the cache answers it."""

import json

from mitmproxy import ctx, http


class Capture:
    def load(self, loader) -> None:
        loader.add_option("capture_file", str, "", "JSONL file the POSTs are appended to")

    def request(self, flow: http.HTTPFlow) -> None:
        if not ctx.options.capture_file or flow.request.method != "POST":
            return
        try:
            body = json.loads(flow.request.get_content() or b"null")
        except ValueError:
            return
        record = {"path": flow.request.path.split("?", 1)[0], "user_agent": flow.request.headers.get("user-agent", ""),
                  "body": body}
        with open(ctx.options.capture_file, "a") as out:
            out.write(json.dumps(record) + "\n")


addons = [Capture()]

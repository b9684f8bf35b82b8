"""llm-cache's pure logic: endpoint recognition, cache keys, stream parsing and synthesis, decisions.
Nothing here imports mitmproxy; addon.py adapts flows to these functions."""

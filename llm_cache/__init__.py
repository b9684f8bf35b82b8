"""llm-cache's pure logic: endpoint recognition, cache keys, stream parsing and synthesis, decisions.
Nothing here imports mitmproxy; addon.py adapts flows to these functions."""

import os

# The semantic tier's numpy work is one small matrix-vector product per lookup: BLAS threads would
# only spin beside mitmproxy's own (~1 ms of CPU more per lookup, measured). Set here, before anything
# imports numpy; a value the user set wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

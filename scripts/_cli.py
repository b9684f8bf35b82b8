"""scripts/llm-cache's Python side: the repo root on sys.path (cache_models lives there), then the CLI."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llm_cache.cli import main  # noqa: E402  (after the path is set)

if __name__ == "__main__":
    sys.exit(main())

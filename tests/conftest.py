import sys
from pathlib import Path

# addon.py and cache_models.py live at the repo root, as mitmdump -s expects.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

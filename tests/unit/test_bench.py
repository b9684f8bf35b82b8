"""scripts/bench's arithmetic: a ratio is taken within each round and the median round's reported."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from _bench import paired  # noqa: E402  (scripts/ is not a package)


def test_ratios_are_paired_within_rounds():
    rounds = {"hit": [{"rps": 90, "cpu_us": 110}, {"rps": 50, "cpu_us": 200}, {"rps": 99, "cpu_us": 101}],
              "ceiling": [{"rps": 100, "cpu_us": 100}, {"rps": 50, "cpu_us": 200}, {"rps": 110, "cpu_us": 100}]}
    by_rps, by_cpu, low, high = paired(rounds, "hit", "ceiling")
    # Medians of the scenarios taken apart would say 90/100; each round's own ratio says 0.9, 1.0, 0.9.
    assert (by_rps, low, high) == (0.9, 0.9, 1.0)
    assert round(by_cpu, 3) == 0.99

"""What hits saved (scripts/llm-cache stats): tokens, and money from genai-prices' bundled price
table (no network); a model it does not know is said to be of unknown price."""

from dataclasses import dataclass
from decimal import Decimal
from typing import Any


@dataclass
class Saved:
    """What one model's (or host's) hits saved."""

    entries: int = 0
    bytes: int = 0
    hits: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    money: Decimal = Decimal(0)
    priced_hits: int = 0
    unpriced_hits: int = 0  # hits of entries whose model has no known price or whose usage is not known

    def add(self, group: dict[str, Any], price: Decimal | None) -> None:
        hits = group["hits"]
        self.entries += group["entries"]
        self.bytes += group["bytes"]
        self.hits += hits
        self.input_tokens += (group["input_tokens"] or 0) * hits
        self.output_tokens += (group["output_tokens"] or 0) * hits
        if price is None:
            self.unpriced_hits += hits
        else:
            self.money += price * hits
            self.priced_hits += hits

    @property
    def money_saved(self) -> Decimal | None:
        return None if self.unpriced_hits and not self.priced_hits else self.money

    def document(self) -> dict[str, Any]:
        return {"entries": self.entries, "bytes": self.bytes, "hits": self.hits,
                "input_tokens_saved": self.input_tokens, "output_tokens_saved": self.output_tokens,
                "money_saved_usd": self.money_saved, "unpriced_hits": self.unpriced_hits}


class Prices:
    """One request's price from genai-prices' bundled table (no network): by the provider at the
    entry's host, else by the model's name alone (a local proxy or server of a known model)."""

    def __init__(self) -> None:
        import genai_prices  # 0.3 s of import: only for stats

        self.source = f"genai-prices {genai_prices.__version__}"
        self._calc = genai_prices.calc_price
        self._usage = genai_prices.Usage
        self._memo: dict[tuple[str, str, int, int], Decimal | None] = {}

    def of(self, host: str, model: str, input_tokens: int | None, output_tokens: int | None) -> Decimal | None:
        if input_tokens is None and output_tokens is None:
            return None  # the provider reported no usage
        usage = (host, model, input_tokens or 0, output_tokens or 0)
        if usage not in self._memo:
            self._memo[usage] = self._lookup(*usage)
        return self._memo[usage]

    def _lookup(self, host: str, model: str, input_tokens: int, output_tokens: int) -> Decimal | None:
        usage = self._usage(input_tokens=input_tokens, output_tokens=output_tokens)
        for api_url in (f"https://{host}", None):
            try:
                return Decimal(self._calc(usage, model, provider_api_url=api_url).total_price)
            except (LookupError, ValueError):  # an unknown provider or model, a price it cannot compute
                continue
        return None

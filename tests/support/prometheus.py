"""One Prometheus exposition, parsed with prometheus_client's own parser, for the /metrics tests."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


class Scrape:
    """One exposition, parsed: every family's type and every sample's value by name and labels."""

    def __init__(self, text: str):
        self.types: dict[str, str] = {}
        self.samples: dict[tuple[str, tuple], float] = {}
        for family in text_string_to_metric_families(text):
            self.types[family.name] = family.type
            for s in family.samples:
                self.samples[(s.name, tuple(sorted(s.labels.items())))] = s.value

    def __call__(self, sample: str, /, **labels: str) -> float:
        return self.samples[(sample, tuple(sorted(labels.items())))]

    def has(self, sample: str, /, **labels: str) -> bool:
        return (sample, tuple(sorted(labels.items()))) in self.samples

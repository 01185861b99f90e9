"""Reads OpenMetrics text on stdin with prometheus_client's own parser
(the one Prometheus' Python tooling uses) and prints its samples as JSON:
{"families": {name: type}, "samples": [[name, labels, value], ...]}.
A text the parser refuses fails with its error."""
import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families

families, samples = {}, []
for family in text_string_to_metric_families(sys.stdin.read()):
    families[family.name] = family.type
    for sample in family.samples:
        samples.append([sample.name, sample.labels, sample.value])
print(json.dumps({"families": families, "samples": samples}))

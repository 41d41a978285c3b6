"""deploy/grafana/bridge-dashboard.json: valid against the schema of the dashboard model it uses,
panels that do not overlap, and every metric it queries exported by a running Bridge. (It cannot
be loaded into Grafana here: no Grafana on these machines.)"""
import json
import re
from pathlib import Path

import jsonschema

from conftest import Bridge
from test_admin import http

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "grafana"
PROMQL_WORDS = {"sum", "by", "rate", "histogram_quantile", "time", "le", "kind", "code", "rpc", "dataset", "op",
                "event", "without", "avg", "max", "min"}


def test_dashboard_is_valid_and_queries_only_metrics_bridge_exports(data_dir, tmp_path):
    dash = json.loads((DEPLOY / "bridge-dashboard.json").read_text())
    jsonschema.validate(dash, json.loads((DEPLOY / "dashboard.schema.json").read_text()))
    cells = set()
    for p in dash["panels"]:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        area = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & area, f"panel {p['title']!r} overlaps another"
        cells |= area
    b = Bridge([f"yellow={data_dir}/*.parquet"], tmp_path / "cache")
    try:
        b.get({"query": "p90", "dataset": "yellow", "output": "summary"})
        exported = set(re.findall(r"^# TYPE (\w+) ", http(b.admin + "/metrics")[1], re.M))
    finally:
        b.stop()
    used = set()
    for p in dash["panels"]:
        for t in p["targets"]:
            names = re.findall(r"[a-z_]+(?=[{\[( ]|$)", re.sub(r'"[^"]*"', "", t["expr"]))
            used |= {n.removesuffix("_bucket") for n in names if n.startswith("bridge_")}
    assert used, "the dashboard must query Bridge's metrics"
    assert used <= exported, f"not exported by Bridge: {sorted(used - exported)}"

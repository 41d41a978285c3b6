"""The Kubernetes manifests name only settings the binary has (no Kubernetes runs here)."""
import re
import subprocess
from pathlib import Path

import yaml

from conftest import BIN

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"


def test_every_bridge_variable_in_the_statefulset_is_a_flag():
    known = set(re.findall(r"env: (BRIDGE_[A-Z0-9_]+)=", subprocess.run([BIN, "--help"], capture_output=True,
                                                                       text=True, check=True).stdout))
    docs = list(yaml.safe_load_all((DEPLOY / "statefulset.yaml").read_text()))
    env = docs[0]["spec"]["template"]["spec"]["containers"][0]["env"]
    used = {e["name"] for e in env if e["name"].startswith("BRIDGE_")}
    assert {"BRIDGE_PEERS_DNS", "BRIDGE_ADVERTISE", "BRIDGE_MAX_CONNECTION_AGE"} <= used
    assert used - known == set(), f"not flags of {BIN}: {sorted(used - known)}"
    services = {d["metadata"]["name"]: d for d in yaml.safe_load_all((DEPLOY / "services.yaml").read_text())}
    assert services["bridge-peers"]["spec"]["clusterIP"] == "None"
    assert docs[0]["spec"]["serviceName"] == "bridge-peers"

#!/usr/bin/env python3
"""What the Kubernetes schemas cannot see in deploy/k8s: that the pieces fit.

The schemas (kubernetes-validate) check each manifest alone; this checks the
references between them — the StatefulSet's governing Service, selectors and
labels, the ports the probes, the Service and the ServiceMonitor name, the
ConfigMap mounted, a termination grace period longer than cvm's drain — and
the ServiceMonitor's fields, for which kubernetes-validate has no schema.
Needs PyYAML (kubernetes-validate brings it).
"""

import sys
from pathlib import Path

import yaml

K8S = Path(__file__).resolve().parents[2] / "deploy/k8s"
# cvm's shutdown: up to 30 s for the ingest loops, then 30 s for the outbox.
DRAIN_SECONDS = 60


def load():
    docs = {}
    for f in sorted(K8S.glob("*.yaml")):
        for d in yaml.safe_load_all(f.read_text()):
            if d:
                docs[d["kind"]] = d
    return docs


def matches(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


def main():
    d = load()
    problems = []
    need = lambda ok, what: ok or problems.append(what)  # noqa: E731

    sts, svc, pdb, cm, sm = (d.get(k) for k in ("StatefulSet", "Service", "PodDisruptionBudget", "ConfigMap", "ServiceMonitor"))
    for kind, doc in [("StatefulSet", sts), ("Service", svc), ("PodDisruptionBudget", pdb), ("ConfigMap", cm), ("ServiceMonitor", sm)]:
        need(doc is not None, f"deploy/k8s has no {kind}")
    if problems:
        sys.exit("\n".join(problems))

    pod = sts["spec"]["template"]
    pod_labels = pod["metadata"]["labels"]
    container = pod["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}

    need(sts["spec"]["serviceName"] == svc["metadata"]["name"], "StatefulSet.serviceName is not the Service")
    need(svc["spec"].get("clusterIP") == "None", "the governing Service is not headless")
    need(matches(sts["spec"]["selector"]["matchLabels"], pod_labels), "StatefulSet selector misses its pods")
    need(matches(svc["spec"]["selector"], pod_labels), "Service selector misses the pods")
    need(matches(pdb["spec"]["selector"]["matchLabels"], pod_labels), "PodDisruptionBudget selector misses the pods")
    for p in svc["spec"]["ports"]:
        need(p["targetPort"] in ports or p["targetPort"] in ports.values(), f"Service port {p['name']} targets no container port")
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        get = container.get(probe, {}).get("httpGet")
        need(get is not None, f"container has no {probe}")
        if get:
            need(get["port"] in ports, f"{probe} port {get['port']} is not a container port")
    need(container["readinessProbe"]["httpGet"]["path"] == "/readyz", "readiness is not /readyz")
    need(container["livenessProbe"]["httpGet"]["path"] == "/healthz", "liveness is not /healthz")
    need(pod["spec"].get("terminationGracePeriodSeconds", 30) > DRAIN_SECONDS,
         f"terminationGracePeriodSeconds is not longer than the drain ({DRAIN_SECONDS} s)")
    annotations = pod["metadata"].get("annotations", {})
    need(annotations.get("prometheus.io/scrape") == "true" and int(annotations.get("prometheus.io/port", 0)) in ports.values(),
         "scrape annotations do not name the metrics port")
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    need(any(v.get("configMap", {}).get("name") == cm["metadata"]["name"] for v in volumes.values()), "the ConfigMap is not mounted")
    claims = {c["metadata"]["name"] for c in sts["spec"].get("volumeClaimTemplates", [])}
    for m in container["volumeMounts"]:
        need(m["name"] in volumes or m["name"] in claims, f"volume mount {m['name']} has no volume")
    need("cvm.toml" in cm["data"], "the ConfigMap has no cvm.toml")
    limits, requests = container["resources"]["limits"], container["resources"]["requests"]
    need("memory" in limits and "memory" in requests, "memory requests and limits are not set")

    need(sm["apiVersion"] == "monitoring.coreos.com/v1", "ServiceMonitor apiVersion")
    need(matches(sm["spec"]["selector"]["matchLabels"], svc["metadata"]["labels"]), "ServiceMonitor selector misses the Service")
    svc_ports = {p["name"] for p in svc["spec"]["ports"]}
    for e in sm["spec"]["endpoints"]:
        need(e["port"] in svc_ports, f"ServiceMonitor endpoint port {e['port']} is not a Service port")
        need(set(e) <= {"port", "path", "interval", "scrapeTimeout", "scheme", "honorLabels", "relabelings", "metricRelabelings"},
             f"ServiceMonitor endpoint has unknown fields {sorted(set(e))}")
        need(e.get("path", "/metrics") == "/metrics", "ServiceMonitor path is not /metrics")

    if problems:
        sys.exit("deploy/k8s does not fit together:\n  " + "\n  ".join(problems))
    print(f"deploy/k8s fits together: {', '.join(sorted(d))}")


if __name__ == "__main__":
    main()

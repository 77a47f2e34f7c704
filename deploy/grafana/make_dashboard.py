#!/usr/bin/env python3
"""Writes deploy/grafana/proxykv.json, the ProxyKV Grafana dashboard (import it, or provision it).

The panels are the questions an operator asks (docs/operations.md "Metrics"): is the proxy path hidden behind
the prefill (mask wait), how often do requests fall back and why, what does each method cost in latency, how full
are the queues and the KV budget, is the data plane on the transport it should be. Edit this file, not the JSON:
tests/deploy/check_deploy.py fails when the two differ.
  python3 deploy/grafana/make_dashboard.py
"""
import json
import pathlib

OUT = pathlib.Path(__file__).with_name("proxykv.json")
DS = {"type": "prometheus", "uid": "${datasource}"}
SEL = 'namespace=~"$namespace"'


def q(expr, legend):
    return {"expr": expr.replace("{SEL}", SEL), "legendFormat": legend, "datasource": DS}


def p95(metric, by="method", extra=""):
    extra = "," + extra if extra else ""
    group = f"le, {by}" if by else "le"
    return f"histogram_quantile(0.95, sum by ({group}) (rate({metric}_bucket{{{{SEL}}{extra}}}[$__rate_interval])))"


PANELS = [
    # (title, unit, targets, description)
    ("Requests/s by method", "reqps",
     [q('sum by (method) (rate(proxykv_e2e_request_latency_seconds_count{{SEL},service="target"}[$__rate_interval]))', "{{method}}")],
     "Finished requests per second, per compression method."),
    ("Fallbacks/s by reason", "reqps",
     [q('sum by (reason) (rate(proxykv_fallback_total{{SEL},service="target"}[$__rate_interval]))', "{{reason}}")],
     "proxykv requests compressed by the local fallback instead of the proxy's mask."),
    ("Time to first token p95", "s",
     [q(p95("proxykv_time_to_first_token_seconds", extra='service="target"'), "{{method}}")], ""),
    ("Inter-token latency p95", "s",
     [q(p95("proxykv_inter_token_latency_seconds", extra='service="target"'), "{{method}}")], ""),
    ("End-to-end latency p95", "s",
     [q(p95("proxykv_e2e_request_latency_seconds", extra='service="target"'), "{{method}}")], ""),
    ("Time to compressed cache p95", "s",
     [q(p95("proxykv_time_to_compressed_cache_seconds", extra='service="target"'), "{{method}}"),
      q(p95("proxykv_request_prefill_time_seconds", extra='service="target"'), "prefill {{method}}")],
     "From arrival until the compressed KV cache is ready, next to the plain prefill time (DESIGN.md section 10)."),
    ("Mask wait after prefill", "s",
     [q(p95("proxykv_mask_wait_seconds", by="", extra='service="target"'), "p95"),
      q('histogram_quantile(0.5, sum by (le) (rate(proxykv_mask_wait_seconds_bucket{{SEL},service="target"}[$__rate_interval])))', "p50")],
     "0 when the mask was there before the target's prefill finished: the proxy path is hidden."),
    ("Proxy features and mapper p95", "s",
     [q(p95("proxykv_proxy_feature_seconds", by="", extra='service="proxy"'), "proxy features"),
      q(p95("proxykv_mapper_inference_seconds", by="", extra='service="mapper"'), "mapper")], ""),
    ("Requests running / waiting", "short",
     [q('sum by (service) (proxykv_num_requests_running{{SEL}})', "running {{service}}"),
      q('sum by (service) (proxykv_num_requests_waiting{{SEL}})', "waiting {{service}}")],
     "waiting{service=proxy|mapper} is what the HPAs scale on."),
    ("KV budget in use", "percentunit",
     [q('max by (pod) (proxykv_kv_cache_usage_ratio{{SEL},service="target"})', "{{pod}}")],
     "Compressed contexts kept for reuse, as a fraction of context_cache_bytes."),
    ("Keep ratio p50", "percentunit",
     [q('histogram_quantile(0.5, sum by (le, method) (rate(proxykv_kv_keep_ratio_bucket{{SEL},service="target"}[$__rate_interval])))', "{{method}}")],
     "Kept KV entries / all KV entries of a compressed context."),
    ("Tokens/s", "short",
     [q('sum(rate(proxykv_prompt_tokens_total{{SEL},service="target"}[$__rate_interval]))', "prompt"),
      q('sum(rate(proxykv_generation_tokens_total{{SEL},service="target"}[$__rate_interval]))', "generated")], ""),
    ("Finished by reason", "reqps",
     [q('sum by (finished_reason) (rate(proxykv_request_success_total{{SEL},service="target"}[$__rate_interval]))', "{{finished_reason}}")], ""),
    ("Context cache hits/s", "reqps",
     [q('sum(rate(proxykv_context_cache_hits_total{{SEL},service="target"}[$__rate_interval]))', "hits")], ""),
    ("Data plane bytes/s by transport", "Bps",
     [q('sum by (transport) (rate(proxykv_transfer_bytes_total{{SEL},service="proxy"}[$__rate_interval]))', "{{transport}}")],
     "zmq where ucx is configured means UCX could not start and the plane fell back."),
]


def dashboard():
    panels = []
    for i, (title, unit, targets, description) in enumerate(PANELS):
        panels.append({
            "id": i + 1,
            "type": "timeseries",
            "title": title,
            "description": description,
            "datasource": DS,
            "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
            "targets": [dict(t, refId=chr(ord("A") + j)) for j, t in enumerate(targets)],
        })
    return {
        "uid": "proxykv",
        "title": "ProxyKV",
        "tags": ["proxykv", "llm-serving"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-3h", "to": "now"},
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus"},
            {"name": "namespace", "type": "query", "datasource": DS, "label": "namespace",
             "query": {"query": "label_values(proxykv_num_requests_running, namespace)", "refId": "ns"},
             "includeAll": True, "multi": True, "current": {"text": "All", "value": "$__all"}, "allValue": ".*",
             "refresh": 2},
        ]},
        "panels": panels,
    }


def render():
    return json.dumps(dashboard(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    print(f"wrote {OUT} ({len(PANELS)} panels)")

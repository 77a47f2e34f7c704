#!/usr/bin/env python3
"""The demo's client: one long context compressed by each method on a running proxykv-target, then its question.

  python3 scripts/demo_client.py http://127.0.0.1:PORT TASKS.jsonl [--keep-ratio 0.25] [--level token]

Prints, per method, what the target really used, the KV bytes kept, the time to compressed cache, the answer
and whether it contains the expected one (TASKS.md's string match).
"""
import argparse
import json
import urllib.request


def call(url, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url + path, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read() or b"null")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("tasks")
    ap.add_argument("--keep-ratio", type=float, default=0.25)
    # token: the same tokens kept in every layer and head, the level models/mapper is trained for; a global budget
    # collapses onto one copy head of the tiny target (bench/RESULTS.md, methods and token-level sections)
    ap.add_argument("--level", choices=("global", "layer", "head", "token"), default="token")
    args = ap.parse_args()
    with open(args.tasks) as f:
        task = json.loads(f.readline())
    query = task["queries"][0]
    model = call(args.url, "GET", "/v1/models")["data"][0]["id"]
    words = len(task["context"].split())
    print(f"context: {task['id']} ({words} words); question: {query['question']!r}; expected: {query['answers']}")
    print(f"{'requested':<10} {'used':<10} {'kv kept':>16} {'to cache':>9}  answer")
    for method in ("full", "snapkv", "kvzip", "proxykv"):
        rho = 1.0 if method == "full" else args.keep_ratio
        ctx = call(args.url, "POST", "/v1/contexts",
                   {"model": model, "context": task["context"], "kv_compression": {"method": method, "keep_ratio": rho, "level": args.level}})
        out = call(args.url, "POST", f"/v1/contexts/{ctx['id']}/completions",
                   {"model": model, "prompt": query["question"], "max_tokens": 48, "temperature": 0})
        call(args.url, "DELETE", f"/v1/contexts/{ctx['id']}")
        text = out["choices"][0]["text"].strip()
        ok = all(a in text for a in query["answers"])
        used = ctx["method"] + ("*" if ctx.get("fallback_reason") else "")
        kept = f"{ctx['kv_bytes'] / 1024:.0f}/{ctx['kv_bytes_full'] / 1024:.0f} KiB"
        print(f"{method:<10} {used:<10} {kept:>16} {ctx['time_to_compressed_cache_s']:>8.3f}s  "
              f"{text!r} {'(correct)' if ok else '(wrong)'}" +
              (f"  [fallback: {ctx['fallback_reason']}]" if ctx.get("fallback_reason") else ""))


if __name__ == "__main__":
    main()

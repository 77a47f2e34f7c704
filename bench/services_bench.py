#!/usr/bin/env python3
"""Time to compressed cache over the three services (issue: the distributed pipeline).

One run, two placements of the services (scripts/run-local.sh with taskset core lists):
  single-device: target, proxy and mapper all on core 0
  dual-device:   target on core 0, proxy and mapper on core 1
In each placement and at each context length, POST /v1/contexts with method "full" (plain prefill), "kvzip"
(scored on the target) and "proxykv" (mask from the proxy path), alternating the methods within each repeat, and
read the target's own time to compressed cache (`time_to_compressed_cache_s`: tokenize + prefill + mask wait or
scoring + eviction). Prints the median per method and its ratio to the plain prefill of the same placement, as a
Markdown table for bench/RESULTS.md.

  python3 bench/services_bench.py --lengths 1024,2048,4096 --repeats 5
"""
import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def post(url, path, body):
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())


def delete(url, path):
    req = urllib.request.Request(url + path, method="DELETE")
    with urllib.request.urlopen(req, timeout=60) as r:
        r.read()


def contexts(bin_dir, lengths, tmp):
    out = {}
    for n in lengths:
        path = os.path.join(tmp, f"ctx-{n}.jsonl")
        subprocess.run([os.path.join(bin_dir, "proxykv"), "make-tasks", "--task", "niah_multikey", "--length", str(n),
                        "--n", "1", "--seed", "7", "--out", path], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        with open(path) as f:
            out[n] = json.loads(f.readline())["context"]
    return out


def start(args, cores, log_dir):
    cmd = ["bash", os.path.join(ROOT, "scripts/run-local.sh"), "--target-cores", cores[0], "--proxy-cores", cores[1],
           "--mapper-cores", cores[2], "--threads", "1", "--log-dir", log_dir, "--bin", args.bin,
           "--mask-deadline-ms", "600000"]
    for flag, value in (("--target-model", args.target_model), ("--proxy-model", args.proxy_model),
                        ("--mapper", args.mapper)):
        if value:
            cmd += [flag, value]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    url = p.stdout.readline().strip()
    if not url.startswith("http://"):
        p.wait()
        sys.exit(f"run-local.sh did not start (logs in {log_dir})")
    return p, url


def model_id(url):
    with urllib.request.urlopen(url + "/v1/models", timeout=60) as r:
        return json.loads(r.read())["data"][0]["id"]


def measure(url, texts, methods, keep_ratio, repeats):
    times = {}
    model = model_id(url)
    for n, text in texts.items():
        for _ in range(repeats):
            for m in methods:
                body = {"model": model, "context": text,
                        "kv_compression": {"method": m, "keep_ratio": 1.0 if m == "full" else keep_ratio}}
                r = post(url, "/v1/contexts", body)
                delete(url, "/v1/contexts/" + r["id"])
                if r["method"] != m:
                    sys.exit(f"{m} at {n} tokens fell back to {r['method']} ({r['fallback_reason']})")
                times.setdefault((n, m), []).append(r["time_to_compressed_cache_s"])
                if m == "proxykv":
                    times.setdefault((n, "proxykv_prefill"), []).append(r["prefill_s"])
                    times.setdefault((n, "proxykv_wait"), []).append(r["mask_wait_s"])
    return {k: statistics.median(v) for k, v in times.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", default="1024,2048,4096")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--keep-ratio", type=float, default=0.25)
    ap.add_argument("--bin", default=os.path.join(ROOT, "build/bin"))
    ap.add_argument("--target-model")
    ap.add_argument("--proxy-model")
    ap.add_argument("--mapper")
    args = ap.parse_args()
    lengths = [int(x) for x in args.lengths.split(",")]
    methods = ["full", "kvzip", "proxykv"]
    ncpu = os.cpu_count() or 1
    if ncpu < 2:
        sys.exit("the dual-device placement needs 2 cores")

    with tempfile.TemporaryDirectory() as tmp:
        texts = contexts(args.bin, lengths, tmp)
        results = {}
        for name, cores in (("single-device", ("0", "0", "0")), ("dual-device", ("0", "1", "1"))):
            p, url = start(args, cores, os.path.join(tmp, name))
            try:
                post(url, "/v1/contexts", {"model": model_id(url), "context": texts[lengths[0]],
                                           "kv_compression": {"method": "proxykv", "keep_ratio": args.keep_ratio}})
                results[name] = measure(url, texts, methods, args.keep_ratio, args.repeats)
            finally:
                p.send_signal(signal.SIGTERM)
                p.wait()

    print(f"keep_ratio {args.keep_ratio}, median of {args.repeats}; time to compressed cache in seconds "
          f"(ratio to plain prefill of the same placement)\n")
    print("| tokens | placement | plain prefill | kvzip (target) | proxykv | proxykv: target prefill + mask wait |")
    print("| ---: | --- | ---: | ---: | ---: | ---: |")
    for n in lengths:
        for name in ("single-device", "dual-device"):
            r = results[name]
            full = r[(n, "full")]
            cells = [f"{full:.3f}"] + [f"{r[(n, m)]:.3f} ({r[(n, m)] / full:.2f}x)" for m in methods[1:]]
            cells.append(f"{r[(n, 'proxykv_prefill')]:.3f} + {r[(n, 'proxykv_wait')]:.3f}")
            print(f"| {n} | {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

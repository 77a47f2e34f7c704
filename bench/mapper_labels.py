"""The target's KVzip labels that `proxykv make-mapper-data` stores, read without numpy or safetensors.

A data directory holds manifest.json (its `shards`, the `target` shape) and shard-NNNNN.safetensors files; in a shard,
tensor `labels.i` ([L*H, T] float32, layer-major rows L0h0 L0h1 L1h0 ...; sinks +inf) belongs to the i-th entry of
the `samples` list in the header's metadata; `features.i` ([C, P, T], proxy heads layer-major) holds the proxy's
feature channels, of which `channel` picks one as [P, T] rows. The safetensors header is JSON, the data
little-endian.
"""
import array
import json
import os
import struct


def read_shard(path, channel=None):
    """[(sample, rows, T, values)] of one shard, in sample order; values is a flat array('f') of rows * T: the
    labels, or with `channel` (an index) that channel of the features."""
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    out = []
    for i, sample in enumerate(json.loads(header["__metadata__"]["samples"])):
        name = f"labels.{i}" if channel is None else f"features.{i}"
        meta = header[name]
        if meta["dtype"] != "F32":
            raise SystemExit(f"{path}: {name} is {meta['dtype']}, expected F32")
        begin, end = meta["data_offsets"]
        values = array.array("f")
        values.frombytes(raw[8 + n + begin:8 + n + end])
        if channel is None:
            rows, t = meta["shape"]
        else:
            _, rows, t = meta["shape"]
            values = values[channel * rows * t:(channel + 1) * rows * t]
        out.append((sample, rows, t, values))
    return out


def read_dir(data_dir, channel=None):
    """(manifest, [(sample, rows, T, values)] of every shard in manifest order); `channel` (a name of the
    manifest's `channels`) reads that feature channel instead of the labels."""
    manifest = json.load(open(os.path.join(data_dir, "manifest.json")))
    index = None
    if channel is not None:
        if channel not in manifest["channels"]:
            raise SystemExit(f"{data_dir}: no feature channel {channel!r} (has {manifest['channels']})")
        index = manifest["channels"].index(channel)
    samples = []
    for shard in manifest["shards"]:
        samples += read_shard(os.path.join(data_dir, shard["file"]), index)
    return manifest, samples


def read_aligned(data_dir, jsonl, ctxs, channel=None):
    """read_dir, checked against the task file's contexts `ctxs` (parsed from `jsonl`): the same count and ids in
    the same order, and T = <bos> <ctx> words </ctx>. Returns (manifest, [(ctx, words, rows, T, values)])."""
    manifest, samples = read_dir(data_dir, channel)
    if len(samples) != len(ctxs):
        raise SystemExit(f"{data_dir}: {len(samples)} contexts, {jsonl}: {len(ctxs)}")
    out = []
    for ctx, (sample, rows, T, x) in zip(ctxs, samples):
        if sample["id"] != ctx["id"]:
            raise SystemExit(f"{data_dir} holds {sample['id']} where {jsonl} has {ctx['id']}")
        words = ["<bos>", "<ctx>"] + ctx["context"].split() + ["</ctx>"]
        if len(words) != T:
            raise SystemExit(f"{ctx['id']}: {len(words)} words, labels for {T}")
        out.append((ctx, words, rows, T, x))
    return manifest, out


def token_top(x, rows, T, rho):
    """The token-level selection (selection level `token`): the top round(rho * T) tokens by their best score over
    the rows; ties go to the earlier token, as select_entries breaks them."""
    best = [max(x[r * T + t] for r in range(rows)) for t in range(T)]
    return set(sorted(range(T), key=lambda t: (-best[t], t))[: round(rho * T)])

"""The target's KVzip labels that `proxykv make-mapper-data` stores, read without numpy or safetensors.

A data directory holds manifest.json (its `shards`, the `target` shape) and shard-NNNNN.safetensors files; in a shard,
tensor `labels.i` ([L*H, T] float32, layer-major rows L0h0 L0h1 L1h0 ...; sinks +inf) belongs to the i-th entry of
the `samples` list in the header's metadata. The safetensors header is JSON, the data little-endian.
"""
import array
import json
import os
import struct


def read_shard(path):
    """[(sample, rows, T, values)] of one shard, in sample order; values is a flat array('f') of rows * T."""
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    out = []
    for i, sample in enumerate(json.loads(header["__metadata__"]["samples"])):
        meta = header[f"labels.{i}"]
        if meta["dtype"] != "F32":
            raise SystemExit(f"{path}: labels.{i} is {meta['dtype']}, expected F32")
        begin, end = meta["data_offsets"]
        values = array.array("f")
        values.frombytes(raw[8 + n + begin:8 + n + end])
        rows, t = meta["shape"]
        out.append((sample, rows, t, values))
    return out


def read_dir(data_dir):
    """(manifest, [(sample, rows, T, values)] of every shard in manifest order)."""
    manifest = json.load(open(os.path.join(data_dir, "manifest.json")))
    samples = []
    for shard in manifest["shards"]:
        samples += read_shard(os.path.join(data_dir, shard["file"]))
    return manifest, samples

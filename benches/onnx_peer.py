#!/usr/bin/env python3
"""Peer benchmark: onnxruntime (CPU) vs our Candle backbones, same weights, same inputs.

Builds ONNX graphs of the two feature extractors straight from the safetensors weights in
`models/` (faceres-deep MobileNetV1 -> 1024-d pooled features, Inception-v3 -> 2048-d pooled
features), checks them against the binary's own exported features, then times both runtimes
interleaved with equal thread counts and prints a markdown table.

    python3 -m pip install -r benches/requirements.txt
    cargo build --release
    python3 benches/onnx_peer.py                      # full comparison
    python3 benches/onnx_peer.py --self-test          # graphs vs shared/models/reference only
    python3 benches/onnx_peer.py --ort-only           # ORT timings only (no binary needed)
    python3 benches/onnx_peer.py --pipeline DIR       # whole pipeline, decode included: Pillow +
                                                      # numpy + ORT loop vs `classify --no-face-crop`

Binary contract: `BIN bench --export DIR --backbones X --count N` writes `DIR/X.safetensors` with
`input` f32 [N,3,H,W] and `features` f32 [N,D]; `BIN bench --json --backbones X --batches B
--count N --repeats R` prints `{"threads": T, "results": [{"backbone", "batch", "images_per_s",
"median_images_per_s"}, ...]}` (forward pass only). `--pipeline DIR` runs `BIN classify --jsonl
--no-face-crop DIR` (and `BIN classify --jsonl DIR`, face detection included) as whole processes.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import load_file

REPO = Path(__file__).resolve().parent.parent
OPSET = 17
# name -> weights file, input size, feature size, tolerance vs our features, reference file + key.
NETWORKS = {
    "faceres": dict(weights="faceres_deep.f32.safetensors", size=224, dim=1024, tol=1e-3,
                    ref="faceres_deep_ref.safetensors", ref_key="global_pool", ref_tol=1e-4),
    "inception-v3": dict(weights="inception_v3.safetensors", size=299, dim=2048, tol=5e-3,
                         ref="inception_v3_ref.safetensors", ref_key="pool", ref_tol=2e-3),
}


class Graph:
    """Small accumulator for ONNX nodes and initializers with unique tensor names."""

    def __init__(self):
        self.nodes, self.inits, self.n = [], [], 0

    def const(self, name, array):
        """Add an f32 initializer and return its name."""
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name))
        return name

    def op(self, op_type, inputs, **attrs):
        """Add a node with one output and return the output name."""
        self.n += 1
        out = f"{op_type.lower()}_{self.n}"
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def conv(self, x, name, w, b, stride=1, pads=(0, 0, 0, 0), group=1):
        """Conv with bias; pads are ONNX order (top, left, bottom, right)."""
        return self.op("Conv", [x, self.const(f"{name}.w", w), self.const(f"{name}.b", b)],
                       kernel_shape=list(w.shape[2:]), strides=[stride, stride], pads=list(pads), group=group)

    def model(self, x, out, size, dim, name):
        """Finish the graph: input `input` [N,3,size,size], output `features` [N,dim]."""
        feats = self.op("Flatten", [self.op("GlobalAveragePool", [out])], axis=1)
        self.nodes.append(helper.make_node("Identity", [feats], ["features"]))
        g = helper.make_graph(
            self.nodes, name, [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["N", 3, size, size])],
            [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", dim])], self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="onnx_peer.py")
        m.ir_version = 8
        onnx.checker.check_model(m)
        return m


def tf_same(n, k, s):
    """TF SAME padding (before, after) for input size n, kernel k, stride s."""
    out = -(-n // s)
    tot = max((out - 1) * s + k - n, 0)
    return tot // 2, tot - tot // 2


def build_faceres(w):
    """faceres-deep (see shared/models/faceres_deep.md): conv0 + 13 dw/pw blocks, relu6, mean pool."""
    g = Graph()
    lo, hi = g.const("relu6.min", np.float32(0)), g.const("relu6.max", np.float32(6))
    relu6 = lambda t: g.op("Clip", [t, lo, hi])
    n = 224

    def conv3(x, name, wt, b, s, group=1):
        nonlocal n
        a, z = tf_same(n, 3, s)
        n = -(-n // s)
        return relu6(g.conv(x, name, wt, b, s, (a, a, z, z), group))

    x = conv3("input", "conv0", w["conv0.weight"], w["conv0.bias"], 2)
    for i, s in enumerate([1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1], 1):
        p = f"block{i}"
        scale, shift = w[f"{p}.dw.scale"], w[f"{p}.dw.shift"]
        dw = w[f"{p}.dw.weight"] * scale[:, None, None, None]  # exact fold of the per-channel scale
        x = conv3(x, f"{p}.dw", dw, shift, s, group=dw.shape[0])
        x = relu6(g.conv(x, f"{p}.pw", w[f"{p}.pw.weight"], w[f"{p}.pw.bias"]))
    return g.model("input", x, 224, 1024, "faceres_deep")


def build_inception(w, eps=1e-3):
    """torchvision Inception3 (no aux, no fc), BN folded, TF-style avg pools (count_include_pad=False)."""
    g = Graph()

    def conv(x, name, stride=1, pad=None):
        wt = w[f"{name}.conv.weight"].astype(np.float64)
        k = 1.0 / np.sqrt(w[f"{name}.bn.running_var"].astype(np.float64) + eps) * w[f"{name}.bn.weight"]
        b = w[f"{name}.bn.bias"] - w[f"{name}.bn.running_mean"] * k
        ph, pw = (wt.shape[2] // 2, wt.shape[3] // 2) if pad is None else pad
        return g.op("Relu", [g.conv(x, name, wt * k[:, None, None, None], b, stride, (ph, pw, ph, pw))])

    def chain(x, p, names):
        for nm in names:
            x = conv(x, f"{p}.{nm}")
        return x

    maxpool = lambda t: g.op("MaxPool", [t], kernel_shape=[3, 3], strides=[2, 2])
    avgpool = lambda t: g.op("AveragePool", [t], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1],
                             count_include_pad=0)
    cat = lambda ts: g.op("Concat", ts, axis=1)

    x = conv("input", "Conv2d_1a_3x3", 2, (0, 0))
    x = conv(x, "Conv2d_2a_3x3", 1, (0, 0))
    x = maxpool(conv(x, "Conv2d_2b_3x3"))
    x = maxpool(conv(conv(x, "Conv2d_3b_1x1"), "Conv2d_4a_3x3", 1, (0, 0)))
    for p in ("Mixed_5b", "Mixed_5c", "Mixed_5d"):
        x = cat([conv(x, f"{p}.branch1x1"), chain(x, p, ["branch5x5_1", "branch5x5_2"]),
                 chain(x, p, ["branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"]),
                 conv(avgpool(x), f"{p}.branch_pool")])
    p = "Mixed_6a"
    x = cat([conv(x, f"{p}.branch3x3", 2, (0, 0)),
             conv(chain(x, p, ["branch3x3dbl_1", "branch3x3dbl_2"]), f"{p}.branch3x3dbl_3", 2, (0, 0)), maxpool(x)])
    for p in ("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"):
        x = cat([conv(x, f"{p}.branch1x1"), chain(x, p, [f"branch7x7_{i}" for i in (1, 2, 3)]),
                 chain(x, p, [f"branch7x7dbl_{i}" for i in (1, 2, 3, 4, 5)]), conv(avgpool(x), f"{p}.branch_pool")])
    p = "Mixed_7a"
    x = cat([conv(conv(x, f"{p}.branch3x3_1"), f"{p}.branch3x3_2", 2, (0, 0)),
             conv(chain(x, p, [f"branch7x7x3_{i}" for i in (1, 2, 3)]), f"{p}.branch7x7x3_4", 2, (0, 0)), maxpool(x)])
    for p in ("Mixed_7b", "Mixed_7c"):
        b3 = conv(x, f"{p}.branch3x3_1")
        bd = chain(x, p, ["branch3x3dbl_1", "branch3x3dbl_2"])
        x = cat([conv(x, f"{p}.branch1x1"), cat([conv(b3, f"{p}.branch3x3_2a"), conv(b3, f"{p}.branch3x3_2b")]),
                 cat([conv(bd, f"{p}.branch3x3dbl_3a"), conv(bd, f"{p}.branch3x3dbl_3b")]),
                 conv(avgpool(x), f"{p}.branch_pool")])
    return g.model("input", x, 299, 2048, "inception_v3")


def load_graph(net, models_dir, cache_dir, rebuild=False):
    """Return the path of the cached ONNX graph of `net`, building it when missing or stale."""
    src = Path(models_dir) / NETWORKS[net]["weights"]
    out = Path(cache_dir) / f"{net}.onnx"
    newest = max(src.stat().st_mtime, Path(__file__).stat().st_mtime)
    if rebuild or not out.exists() or out.stat().st_mtime < newest:
        w = {k: v.astype(np.float32) for k, v in load_file(str(src)).items()}
        m = build_faceres(w) if net == "faceres" else build_inception(w)
        out.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(m, str(out))
        print(f"built {out} ({len(m.graph.node)} nodes) from {src}", file=sys.stderr)
    return out


def session(path, threads, spin=True):
    """ORT CPU session: intra_op = threads, inter_op 1, sequential, ORT_ENABLE_ALL; `spin=False` stops
    idle intra-op threads from busy-waiting (ORT spins by default)."""
    so = ort.SessionOptions()
    if not spin:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def features(sess, x, batch=16):
    """Run the graph over x [N,3,H,W] in chunks of `batch`, returning [N,D]."""
    return np.concatenate([sess.run(["features"], {"input": x[i:i + batch]})[0] for i in range(0, len(x), batch)])


def ort_pass(sess, x, batch):
    """One timed pass over all images of x in batches of `batch`; returns images/s."""
    t = time.perf_counter()
    for i in range(0, len(x), batch):
        sess.run(["features"], {"input": x[i:i + batch]})
    return len(x) / (time.perf_counter() - t)


def warm_up(sess, x, batch):
    """Run every distinct batch shape of a pass once (full batch and the tail)."""
    sess.run(["features"], {"input": x[:batch]})
    if len(x) % batch:
        sess.run(["features"], {"input": x[:len(x) % batch]})


def candle_cmd(args, *extra):
    """Command line of our binary's `bench` subcommand with the shared options."""
    cmd = [args.bin, "bench", *extra]
    return cmd + (["--images", args.images] if args.images else [])


def candle_env(threads):
    """Environment for our binary with the compute pool pinned to `threads`."""
    return {**os.environ, "RAYON_NUM_THREADS": str(threads)}


def candle_repeat(args, net, batch):
    """One `bench --json` call (1 repeat); returns (images/s, threads the binary reported)."""
    cmd = candle_cmd(args, "--json", "--backbones", net, "--batches", str(batch), "--count", str(args.count),
                     "--repeats", "1")
    r = subprocess.run(cmd, env=candle_env(args.threads), cwd=REPO, capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"error: {' '.join(cmd)} failed ({r.returncode}):\n{r.stderr[-2000:]}")
    doc = json.loads(r.stdout[r.stdout.index("{"):])
    hit = [e for e in doc["results"] if e["backbone"] == net and e["batch"] == batch]
    if not hit:
        sys.exit(f"error: no result for {net} batch {batch} in: {r.stdout[:500]}")
    return float(hit[0]["images_per_s"][0]), doc.get("threads")


def export_inputs(args, nets, tmp):
    """Ask our binary for its preprocessed inputs and features; returns {net: (input, features)}."""
    cmd = candle_cmd(args, "--export", tmp, "--backbones", ",".join(nets), "--count", str(args.count))
    r = subprocess.run(cmd, env=candle_env(args.threads), cwd=REPO, capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"error: {' '.join(cmd)} failed ({r.returncode}):\n{r.stderr[-2000:]}")
    return {net: load_export(Path(tmp), net) for net in nets}


def load_export(folder, net):
    """(input [N,3,H,W], Candle features [N,D]) from `folder/<net>.safetensors`."""
    t = load_file(str(folder / f"{net}.safetensors"))
    return np.ascontiguousarray(t["input"], np.float32), np.asarray(t["features"], np.float32)


def reference_batch(args, net):
    """The reference input repeated --count times (ORT-only timing without our binary)."""
    x = load_file(str(Path(args.reference) / NETWORKS[net]["ref"]))["input"].astype(np.float32)
    return np.ascontiguousarray(np.repeat(x, args.count, 0))


def check(net, got, want, tol, what):
    """Print max|diff| of got vs want; return False when above tol or shapes differ."""
    if got.shape != want.shape:
        print(f"{net:13s} {what}: shape {got.shape} != {want.shape}  FAIL")
        return False
    d = float(np.abs(got - want).max())
    ok = d <= tol
    print(f"{net:13s} {what}: max|diff| {d:.2e} (tol {tol:.0e}, max|ref| {float(np.abs(want).max()):.3f}) "
          f"{'ok' if ok else 'FAIL'}")
    return ok


def self_test(args, nets):
    """Check the graphs against shared/models/reference (original-runtime outputs) at batch 1 and 4."""
    ok = True
    for net in nets:
        spec = NETWORKS[net]
        r = load_file(str(Path(args.reference) / spec["ref"]))
        sess = session(load_graph(net, args.models, args.cache, args.rebuild), args.threads)
        x, want = r["input"].astype(np.float32), r[spec["ref_key"]].astype(np.float32)
        ok &= check(net, features(sess, x), want, spec["ref_tol"], "reference, batch 1")
        x4 = np.concatenate([x, x[..., ::-1], x * 0.5, x[:, ::-1]]).copy()  # batch invariance
        f4 = features(sess, x4, 4)
        ok &= check(net, f4, np.concatenate([features(sess, xi[None]) for xi in x4]), 1e-4, "batch 4 vs 1 ")
        ok &= check(net, f4[:1], want, spec["ref_tol"], "reference, batch 4")
    return ok


def stats(v):
    """(median, min, max) of a list of images/s."""
    return statistics.median(v), min(v), max(v)


def fmt(v):
    """'median (min-max)' for a table cell."""
    if not v:
        return "-"
    m, lo, hi = stats(v)
    return f"{m:.1f} ({lo:.1f}-{hi:.1f})"


# --- --pipeline: photos in, features out, decode included --------------------------------------------

# `gc_core::imaging::IMAGE_EXTENSIONS`; crates/engine/src/faceres.rs `BGR_MEAN`.
PHOTO_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".jfif"}
FACERES_BGR_MEAN = np.array([103.939, 116.779, 123.68], np.float32)
PIPELINE_BATCH = 16  # `classify`'s batch (crates/core/src/classify_stream.rs)


def list_photos(root):
    """The photos `classify DIR` walks: recursive, links followed, hidden names skipped, each file once, sorted."""
    out, seen = [], set()
    for d, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = [x for x in dirs if not x.startswith(".")]
        for f in files:
            p = Path(d) / f
            if f.startswith(".") or p.suffix.lower() not in PHOTO_EXTENSIONS or not p.is_file():
                continue
            st = p.stat()
            if (st.st_dev, st.st_ino) not in seen:  # hard links count once, as in collect_images
                seen.add((st.st_dev, st.st_ino))
                out.append(p)
    return sorted(out)


def warm_page_cache(paths):
    """Read every file once so that no side pays for the first read from disk; returns the bytes read."""
    total = 0
    for p in paths:
        with open(p, "rb") as f:
            while chunk := f.read(1 << 20):
                total += len(chunk)
    return total


def faceres_input(path, draft):
    """Pillow decode (EXIF orientation applied), whole photo resized to 224x224 (antialiased bilinear),
    faceres normalisation as `preprocess::prepare`: BGR 0..255 minus the VGGFace2 means, CHW."""
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        if draft:
            im.draft("RGB", (224, 224))  # JPEG: DCT scaling to the smallest size >= 224x224
        im = ImageOps.exif_transpose(im).convert("RGB").resize((224, 224), Image.BILINEAR)
    bgr = np.asarray(im, np.float32)[:, :, ::-1] - FACERES_BGR_MEAN
    return np.ascontiguousarray(bgr.transpose(2, 0, 1))


def python_round(paths, make_session, draft):
    """One timed Python loop over `paths`: decode, resize, normalise, batches of 16 through ORT.
    Session construction is outside the timed loop. Returns (seconds, CPU seconds, feature rows, failed)."""
    sess = make_session()
    feats, batch, failed = [], [], 0
    c0, t0 = time.process_time(), time.perf_counter()
    for i, p in enumerate(paths):
        try:
            batch.append(faceres_input(p, draft))
        except Exception as e:  # a photo Pillow cannot read is skipped, as `classify` skips it
            print(f"python: skipped {p}: {e}", file=sys.stderr)
            failed += 1
        if len(batch) == PIPELINE_BATCH or (i == len(paths) - 1 and batch):
            feats.append(sess.run(["features"], {"input": np.stack(batch)})[0])
            batch = []
    secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    return secs, cpu, sum(len(f) for f in feats), failed


def ours_round(args, folder, face_crop):
    """One `BIN classify --jsonl [--no-face-crop] DIR` process, timed whole (start-up and model load
    included), fresh empty cache. Returns (seconds, CPU seconds of the child, skipped photos)."""
    import resource

    cmd = [args.bin, "classify", "--jsonl", *([] if face_crop else ["--no-face-crop"]), str(folder)]
    with tempfile.TemporaryDirectory(prefix="onnx-peer-cache-") as cache:
        env = {**candle_env(args.threads), "GENDER_CLASSIFIER_CACHE": cache}
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        r = subprocess.run(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        secs = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode:
        sys.exit(f"error: {' '.join(cmd)} failed ({r.returncode}):\n{r.stderr[-2000:]}")
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return secs, cpu, sum(line.startswith("skipped ") for line in r.stderr.splitlines())


def pipeline(args, graph):
    """`--pipeline DIR`: alternate the Python loop, `classify --no-face-crop` and `classify` --repeats
    times; print per-round photos/s, median (min-max) and the ours/Python ratio. Returns the exit status."""
    folder = Path(args.pipeline)
    if not folder.is_dir():
        return f"error: --pipeline {folder} is not a folder of photos"
    if not Path(args.bin).exists():
        return f"error: binary {args.bin} not found (cargo build --locked, then --bin target/debug/gender-classifier)"
    try:
        import PIL
    except ImportError:
        return "error: --pipeline needs Pillow (python3 -m pip install -r benches/requirements.txt)"
    paths = list_photos(folder)
    if not paths:
        return f"error: no photos ({', '.join(sorted(PHOTO_EXTENSIONS))}) under {folder}"
    n = len(paths)
    size = warm_page_cache(paths + [Path(args.bin), graph])
    print(f"{n} photos under {folder} ({size / 2**20:.1f} MiB incl. binary and graph, page cache warmed); "
          f"Pillow {PIL.__version__}{', draft' if args.pil_draft else ''}", file=sys.stderr)
    make_session = lambda: session(graph, args.threads, not args.ort_no_spin)
    sides = ("python", "whole", "faces")
    rounds = []
    for r in range(args.repeats):  # rotate which side goes first
        row = {}
        for side in sides[r % 3:] + sides[:r % 3]:
            if side == "python":
                secs, cpu, rows, failed = python_round(paths, make_session, args.pil_draft)
                if rows + failed != n:
                    return f"error: python produced {rows} feature rows for {n} photos"
            else:
                secs, cpu, failed = ours_round(args, folder, side == "faces")
            row[side] = dict(seconds=secs, cpu_seconds=cpu, photos_per_s=n / secs, skipped=failed)
            print(f"round {r + 1}: {side:6s} {n / secs:7.1f} photos/s ({secs:.2f} s, CPU {cpu:.2f} s, "
                  f"{failed} skipped)", file=sys.stderr)
        row["ratio_whole"] = row["whole"]["photos_per_s"] / row["python"]["photos_per_s"]
        row["ratio_faces"] = row["faces"]["photos_per_s"] / row["python"]["photos_per_s"]
        rounds.append(row)

    col = lambda side: [x[side]["photos_per_s"] for x in rounds]
    ratios = [x["ratio_whole"] for x in rounds]
    summary = dict(folder=str(folder), photos=n, threads=args.threads, repeats=args.repeats, bin=args.bin,
                   onnxruntime=ort.__version__, pillow=PIL.__version__, pil_draft=args.pil_draft,
                   ort_spin=not args.ort_no_spin, rounds=rounds,
                   median_photos_per_s={s: stats(col(s))[0] for s in sides},
                   median_ratio_whole=statistics.median(ratios),
                   median_ratio_faces=statistics.median(x["ratio_faces"] for x in rounds))
    out = sys.stderr if args.json else sys.stdout
    print(f"\n{n} photos, {folder}. Python: Pillow decode + exif_transpose + resize 224 bilinear (antialiased)"
          f"{' with JPEG draft' if args.pil_draft else ''} + numpy BGR-mean, ORT faceres batch {PIPELINE_BATCH}, "
          f"intra_op={args.threads} inter_op=1{', no spinning' if args.ort_no_spin else ''}, session built outside the timed loop. Ours: whole process "
          f"(start-up and model load included), RAYON_NUM_THREADS={args.threads}, fresh cache.\n", file=out)
    print("| round | Python photos/s | ours --no-face-crop photos/s | ours/Python | ours default (faces) photos/s "
          "| default/Python | CPU ms/photo: Python, ours whole, ours faces |", file=out)
    print("|---|---|---|---|---|---|---|", file=out)
    cpu = lambda x: ", ".join(f"{1000 * x[s]['cpu_seconds'] / n:.1f}" for s in sides)
    for i, x in enumerate(rounds, 1):
        print(f"| {i} | {x['python']['photos_per_s']:.1f} | {x['whole']['photos_per_s']:.1f} | {x['ratio_whole']:.2f} "
              f"| {x['faces']['photos_per_s']:.1f} | {x['ratio_faces']:.2f} | {cpu(x)} |", file=out)
    med_cpu = ", ".join(f"{1000 * statistics.median(x[s]['cpu_seconds'] for x in rounds) / n:.1f}" for s in sides)
    print(f"| median (min-max) | {fmt(col('python'))} | {fmt(col('whole'))} | {summary['median_ratio_whole']:.2f} "
          f"| {fmt(col('faces'))} | {summary['median_ratio_faces']:.2f} | {med_cpu} |", file=out)
    if args.json:
        print(json.dumps(summary, indent=2))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(summary, indent=2) + "\n")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=str(REPO / "target/release/gender-classifier"), help="our binary")
    ap.add_argument("--threads", type=int, default=2, help="ORT intra-op threads = RAYON_NUM_THREADS")
    ap.add_argument("--batches", default="1,16", help="comma-separated batch sizes")
    ap.add_argument("--count", type=int, default=32, help="images per timed pass")
    ap.add_argument("--repeats", type=int, help="timed passes per runtime (default 5; --pipeline: 3)")
    ap.add_argument("--networks", default="faceres,inception-v3", help="faceres,inception-v3")
    ap.add_argument("--images", help="forwarded to `bench --images`")
    ap.add_argument("--models", default=str(REPO / "models"), help="folder with the safetensors weights")
    ap.add_argument("--reference", default=str(REPO.parent / "shared/models/reference"))
    ap.add_argument("--cache", default=str(REPO / "target/onnx-peer"), help="where the .onnx graphs go")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the ONNX graphs")
    ap.add_argument("--self-test", action="store_true", help="only check graphs against --reference")
    ap.add_argument("--ort-only", action="store_true", help="time ORT on reference inputs, no binary")
    ap.add_argument("--export-dir", help="use this `bench --export` folder instead of calling --export")
    ap.add_argument("--json-out", help="also write the results as JSON")
    ap.add_argument("--pipeline", metavar="DIR", help="time the whole pipeline on the photos of DIR, decode "
                    "included: a Pillow + numpy + ORT faceres loop vs `BIN classify --no-face-crop DIR`")
    ap.add_argument("--pil-draft", action="store_true", help="--pipeline: let Pillow decode JPEGs at a reduced "
                    "scale (Image.draft), the fastest plain-Pillow decode")
    ap.add_argument("--ort-no-spin", action="store_true", help="--pipeline: ORT intra-op threads do not "
                    "busy-wait (session.intra_op.allow_spinning=0; ORT's default spins)")
    ap.add_argument("--json", action="store_true", help="--pipeline: print the results as JSON on stdout")
    args = ap.parse_args()
    if args.repeats is None:
        args.repeats = 3 if args.pipeline else 5
    if args.repeats < 1 or args.threads < 1:
        sys.exit("error: --repeats and --threads must be at least 1")
    nets = [n.strip() for n in args.networks.split(",") if n.strip()]
    batches = [int(b) for b in args.batches.split(",")]
    if bad := [n for n in nets if n not in NETWORKS]:
        sys.exit(f"error: unknown network(s) {bad}; choose from {list(NETWORKS)}")

    print(f"onnxruntime {ort.__version__}, onnx {onnx.__version__}, numpy {np.__version__}; "
          f"threads {args.threads}", file=sys.stderr)
    if args.self_test:
        sys.exit(0 if self_test(args, nets) else "error: ONNX graphs do not match the reference outputs")
    if args.pipeline:
        graph = load_graph("faceres", args.models, args.cache, args.rebuild)
        sys.exit(pipeline(args, graph))

    if not args.ort_only and not Path(args.bin).exists():
        sys.exit(f"error: binary {args.bin} not found (cargo build --release, or pass --bin / --ort-only)")
    tmp = tempfile.TemporaryDirectory(prefix="onnx-peer-")
    if args.export_dir:
        data = {n: load_export(Path(args.export_dir), n) for n in nets}
    elif args.ort_only:
        data = {n: (reference_batch(args, n), None) for n in nets}
    else:
        data = export_inputs(args, nets, tmp.name)

    sessions, ok = {}, True
    for n in nets:
        sessions[n] = session(load_graph(n, args.models, args.cache, args.rebuild), args.threads)
        x, want = data[n]
        if want is not None:
            ok &= check(n, features(sessions[n], x), want, NETWORKS[n]["tol"], f"ORT vs Candle, {len(x)} images")
    if not ok:
        sys.exit("error: ORT features differ from Candle's beyond tolerance (different weights/preprocessing/graph?)")

    rows, candle_threads = [], set()
    for n in nets:
        x = data[n][0]
        for b in batches:
            warm_up(sessions[n], x, b)
            o, c = [], []
            for r in range(args.repeats):  # alternate which runtime goes first (ABBA)
                for side in (("ort", "candle") if r % 2 == 0 else ("candle", "ort")):
                    if side == "ort":
                        o.append(ort_pass(sessions[n], x, b))
                    elif not args.ort_only:
                        ips, t = candle_repeat(args, n, b)
                        c.append(ips)
                        candle_threads.add(t)
            rows.append(dict(network=n, batch=b, count=len(x), candle_images_per_s=c, ort_images_per_s=o,
                             ratio=stats(c)[0] / stats(o)[0] if c else None))
            print(f"{n} batch {b}: ORT {fmt(o)}  Candle {fmt(c)}", file=sys.stderr)

    candle = "" if args.ort_only else f"; Candle RAYON_NUM_THREADS={args.threads}" + (
        f", binary reported {sorted(candle_threads, key=str)}" if candle_threads else "")
    print(f"\nThreads: ORT intra_op={args.threads} inter_op=1 (sequential){candle}"
          + f". {args.count} images per pass, {args.repeats} repeats, img/s median (min-max), forward pass only.\n")
    print("| network | batch | Candle img/s | ORT img/s | Candle/ORT |")
    print("|---|---|---|---|---|")
    for r in rows:
        ratio = f"{r['ratio']:.2f}" if r["ratio"] is not None else "-"
        print(f"| {r['network']} | {r['batch']} | {fmt(r['candle_images_per_s'])} | {fmt(r['ort_images_per_s'])} "
              f"| {ratio} |")
    if candle_threads - {args.threads}:
        print(f"\nwarning: the binary reported {candle_threads} threads, not {args.threads}", file=sys.stderr)
    if args.json_out:
        doc = dict(threads=args.threads, onnxruntime=ort.__version__, count=args.count, repeats=args.repeats,
                   candle_threads=sorted(candle_threads, key=str), results=rows)
        Path(args.json_out).write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()

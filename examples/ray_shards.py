#!/usr/bin/env python3
"""Classify a large folder with Ray: the binary is a worker, Ray does the distribution.

The driver lists the photos of a folder, cuts the list into shards, and runs one Ray task per
shard. Each task starts `gender-classifier classify --files-from - --jsonl` with its shard on
stdin and returns the JSON lines it printed (one per photo: the class by name, or an "error").
The driver gathers the lines into one JSON-lines file and prints a summary on stderr.

Nothing here is specific to one machine: `ray.init()` starts a Ray on this machine, and
`--address` joins an existing cluster instead (the binary and the photos must then be reachable
at the same paths on every node). Ray's old `local_mode=True` (run the tasks in the driver) is gone
from Ray 2.x (`RuntimeError: local_mode is no longer supported` in 2.60), so a one-machine run is a
small local cluster.

Not part of CI: it needs `pip install ray`. See docs/DISTRIBUTED.md for a run and its output.

    python3 examples/ray_shards.py FOLDER --binary target/release/gender-classifier \
        --shards 8 --out results.jsonl
"""

import argparse
import collections
import json
import os
import subprocess
import sys
import time

import ray

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


def list_photos(folder, limit):
    """The image files under `folder`, sorted, hidden entries skipped; at most `limit`, spread evenly."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                found.append(os.path.abspath(os.path.join(root, name)))
    if "\n" in "".join(found):
        bad = [p for p in found if "\n" in p]
        print(f"skipped {len(bad)} file(s) with a newline in the name (a list holds one path per line)", file=sys.stderr)
        found = [p for p in found if "\n" not in p]
    if limit and len(found) > limit:
        found = [found[i * len(found) // limit] for i in range(limit)]
    return found


def shards_of(paths, n):
    """`paths` cut into `n` contiguous shards of near-equal size (none empty)."""
    n = max(1, min(n, len(paths)))
    return [paths[i * len(paths) // n : (i + 1) * len(paths) // n] for i in range(n)]


@ray.remote(num_cpus=1)
def classify_shard(index, binary, paths, extra_args, threads):
    """Runs the binary on one shard; returns its exit code, JSON lines and the tail of its stderr."""
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    started = time.monotonic()
    done = subprocess.run(
        [binary, "classify", "--files-from", "-", "--jsonl", *extra_args],
        input=b"".join(os.fsencode(p) + b"\n" for p in paths),
        capture_output=True,
        env=env,
        check=False,
    )
    lines = [json.loads(line) for line in done.stdout.decode("utf-8").splitlines() if line.strip()]
    return {
        "shard": index,
        "photos": len(paths),
        "exit_code": done.returncode,
        "seconds": time.monotonic() - started,
        "lines": lines,
        "stderr_tail": done.stderr.decode("utf-8", "replace").strip().splitlines()[-3:],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", help="folder of photos (searched recursively)")
    ap.add_argument("--binary", default="target/release/gender-classifier", help="the gender-classifier binary")
    ap.add_argument("--shards", type=int, default=4, help="how many pieces the file list is cut into")
    ap.add_argument("--cpus", type=int, default=os.cpu_count(), help="CPUs Ray may use on this machine")
    ap.add_argument("--address", help="an existing Ray cluster to join instead of starting one here")
    ap.add_argument("--limit", type=int, default=0, help="classify at most this many photos, spread over the folder")
    ap.add_argument("--out", help="write the gathered JSON lines here (default: stdout)")
    ap.add_argument("extra", nargs="*", help="more arguments for classify, after --, e.g. -- --no-face-crop")
    a = ap.parse_args()

    binary = os.path.abspath(a.binary)
    if not os.access(binary, os.X_OK):
        sys.exit(f"error: no executable at {binary}: build it (cargo build --release) or give --binary")
    photos = list_photos(a.folder, a.limit)
    if not photos:
        sys.exit(f"error: no photos under {a.folder}")
    shards = shards_of(photos, a.shards)

    if a.address:
        ray.init(address=a.address, include_dashboard=False, log_to_driver=False)
    else:
        ray.init(num_cpus=a.cpus, include_dashboard=False, log_to_driver=False)
    # Each task takes one Ray CPU; the binary's compute threads share the CPUs of the tasks that run at once.
    parallel = max(1, min(len(shards), int(ray.cluster_resources().get("CPU", 1))))
    threads = max(1, (a.cpus or 1) // parallel)
    started = time.monotonic()
    results = ray.get([classify_shard.remote(i, binary, s, a.extra, threads) for i, s in enumerate(shards)])
    wall = time.monotonic() - started
    ray.shutdown()

    out = open(a.out, "w", encoding="utf-8") if a.out else sys.stdout
    by_class = collections.Counter()
    agree = errors = 0
    for r in sorted(results, key=lambda r: r["shard"]):
        for line in r["lines"]:
            out.write(json.dumps(line, sort_keys=True) + "\n")
            if "error" in line:
                errors += 1
                continue
            by_class[line["predicted"]] += 1
            # Where the photos sit in class folders (FOLDER/female/x.jpg), count the agreement.
            agree += os.path.basename(os.path.dirname(line["path"])) == line["predicted"]
    if a.out:
        out.close()

    for r in sorted(results, key=lambda r: r["shard"]):
        note = "" if r["exit_code"] == 0 else f"  exit {r['exit_code']}: {' | '.join(r['stderr_tail'])}"
        print(
            f"shard {r['shard']}: {r['photos']} photos, {len(r['lines'])} lines, {r['seconds']:.1f} s{note}",
            file=sys.stderr,
        )
    gathered = sum(len(r["lines"]) for r in results)
    print(
        f"{len(photos)} photos in {len(shards)} shards ({parallel} at a time, {threads} thread(s) each): "
        f"{gathered} lines gathered in {wall:.1f} s; {dict(sorted(by_class.items()))}; {errors} error(s); "
        f"{agree} agree with their folder's name",
        file=sys.stderr,
    )
    if gathered != len(photos) or any(r["exit_code"] != 0 for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# End-to-end check of the GPU path on a machine with an NVIDIA GPU (no internet needed).
#
#   scripts/gpu-check.sh [BINARY]            # BINARY: the CUDA build (default target/cuda/release/gender-classifier),
#                                            # or its .xz from scripts/build-cuda.sh
#   DEVICE=cpu scripts/gpu-check.sh BINARY   # the same checks with the CPU in place of the GPU
#
# 1. classify --json on assets/samples with the device and with the CPU: every probability within 1e-3;
# 2. train a head on a small labelled copy of the samples on the device;
# 3. bench --json on the device and on the CPU: faceres and Inception-v3 at batch 1, 16 and 64, and
#    the whole default classify (photos/s);
# and one table at the end. Run from the repository root; needs python3 (standard library only).
set -euo pipefail
cd "$(dirname "$0")/.."

bin="${1:-target/cuda/release/gender-classifier}"
dev="${DEVICE:-cuda}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
if [ "${bin%.xz}" != "$bin" ]; then
  xz -dc "$bin" > "$work/gender-classifier" && chmod +x "$work/gender-classifier"
  bin="$work/gender-classifier"
fi
[ -x "$bin" ] || { echo "error: $bin is not an executable; build it with scripts/build-cuda.sh" >&2; exit 1; }
export GENDER_CLASSIFIER_CACHE="$work/cache"
export GENDER_CLASSIFIER_MODELS="${GENDER_CLASSIFIER_MODELS:-$PWD/models}"
say() { echo "== $*" >&2; }
# timed FILE CMD...: runs CMD and writes its wall time in seconds to FILE.
timed() {
  local out="$1"; shift
  local t0; t0=$(date +%s.%N)
  "$@"
  python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$t0" "$(date +%s.%N)" > "$out"
}

say "1/3 classify on $dev and on cpu"
"$bin" classify assets/samples --json --device "$dev" > "$work/dev.json"
"$bin" classify assets/samples --json --device cpu > "$work/cpu.json"

say "2/3 train on $dev"
# Two classes from labels.csv, each photo four times with a different trailing byte (unique hashes).
python3 - "$work/data" <<'EOF'
import csv, pathlib, sys
out = pathlib.Path(sys.argv[1])
for row in csv.DictReader(open("assets/samples/labels.csv")):
    src = pathlib.Path("assets/samples") / row["file"]
    (out / row["class"]).mkdir(parents=True, exist_ok=True)
    for i in range(4):
        (out / row["class"] / f"{src.stem}-{i}{src.suffix}").write_bytes(src.read_bytes() + bytes([i]))
EOF
timed "$work/train.s" \
  "$bin" train "$work/data" --device "$dev" --out "$work/model.safetensors" --validation-pct 0 --test-pct 0 --epochs 20 \
  2> "$work/train.log" || { cat "$work/train.log" >&2; exit 1; }
[ -s "$work/model.safetensors" ] && [ -s "$work/model.json" ] || { echo "error: train wrote no model" >&2; exit 1; }

say "3/3 bench on $dev and on cpu"
for d in $(printf "%s\n" "$dev" cpu | sort -u); do
  "$bin" bench --json --device "$d" --backbones faceres,inception-v3 --batches 1,16,64 --count 64 --repeats 3 \
    --images assets/samples > "$work/bench-$d.json"
  # The whole default classify: 8 copies of each sample, timed as one process.
  mkdir -p "$work/photos-$d"
  for f in assets/samples/*.jpg assets/samples/*.png; do
    for i in 1 2 3 4 5 6 7 8; do cp "$f" "$work/photos-$d/$i-$(basename "$f")"; done
  done
  timed "$work/classify-$d.s" "$bin" classify "$work/photos-$d" --json --device "$d" > /dev/null
done

python3 - "$work" "$dev" <<'EOF'
import json, pathlib, sys
work, dev = pathlib.Path(sys.argv[1]), sys.argv[2]
a = json.loads((work / "dev.json").read_text())
b = json.loads((work / "cpu.json").read_text())
worst, n = 0.0, 0
for ia, ib in zip(a["images"], b["images"], strict=True):
    for fa, fb in zip(ia["faces"], ib["faces"], strict=True):
        for pa, pb in zip(fa["probs"], fb["probs"], strict=True):
            worst, n = max(worst, abs(pa - pb)), n + 1
ok = worst <= 1e-3
bench = {d: json.loads((work / f"bench-{d}.json").read_text()) for d in {dev, "cpu"}}
photos = len(list((work / "photos-cpu").iterdir()))
rate = lambda d: photos / float((work / f"classify-{d}.s").read_text().split()[-1])
print(f"\n| check | {dev} | cpu |\n|---|---|---|")
print(f"| classify probabilities, max |diff| over {n} | {worst:.2e} ({'ok' if ok else 'FAIL'}) | |")
print(f"| train on {dev} (20 epochs, {len(list((work / 'data').rglob('*.*')))} photos) | {float((work / 'train.s').read_text().split()[-1]):.1f} s | |")
for r in bench[dev]["results"]:
    c = next(x for x in bench["cpu"]["results"] if x["backbone"] == r["backbone"] and x["batch"] == r["batch"])
    print(f"| {r['backbone']} forward, batch {r['batch']} (photos/s) | {r['median_images_per_s']:.1f} | {c['median_images_per_s']:.1f} |")
print(f"| default classify, {photos} photos (photos/s, whole process) | {rate(dev):.1f} | {rate('cpu'):.1f} |")
sys.exit(0 if ok else 1)
EOF

#!/usr/bin/env bash
# Builds benchmark photo folders for `bench --pipeline` from the datasets in ../shared (never commit them).
#
#   benches/make_photos.sh portraits OUT [N]   N (64) 960x1280 portrait JPEGs: a web-faces face enlarged to
#                                                about 560 px tall on a textured background
#   benches/make_photos.sh phone OUT [N]       N (16) 12 MP (4000x3000) JPEGs stored turned a quarter with
#                                                EXIF orientation 6, as phones write them, face about 1200 px
#   benches/make_photos.sh many OUT [N]        N (100000) hard links of the 3907 web-faces and utk-dev photos in
#                                                OUT/male and OUT/female (a dataset: audit, the app), see below
#   benches/make_photos.sh many-copies OUT [N]  the same layout with N real copies, every one's bytes unique
#                                                (about 22 kB each: 2.2 GB for 100,000), for `classify`
#
# Every portrait's and phone photo's bytes are unique, so no feature cache can answer for another. `many` is
# the exception: hard links share their bytes, so the cache answers for all but one link per source (3907
# misses of 100,000), and a walk that counts each file once by device and inode (`classify`'s folder walk)
# sees only 3907 photos; `many-copies` is the folder for those. The portraits and phone photos
# are synthetic (ImageMagick's plasma texture plus sensor-like noise, so the JPEGs carry about as much detail
# per pixel as real photos); docs/PERFORMANCE.md says what they stand for.
set -euo pipefail

kind=${1:?usage: make_photos.sh portraits|phone|many|many-copies OUT [N]}
out=${2:?usage: make_photos.sh portraits|phone|many|many-copies OUT [N]}
data=${DATASETS:-$(dirname "$0")/../../shared/datasets}
mkdir -p "$out"
mapfile -t faces < <(find "$data/web-faces" -name '*.jpg' | sort)
[ ${#faces[@]} -gt 0 ] || { echo "no photos under $data/web-faces: set DATASETS" >&2; exit 1; }

case "$kind" in
portraits)
    n=${3:-64}
    for i in $(seq 0 $((n - 1))); do
        f=${faces[$((i * 37 % ${#faces[@]}))]}
        convert -size 960x1280 -seed "$i" plasma:tan-slategray -attenuate 0.15 +noise Gaussian \
            \( "$f" -resize x560 \) -gravity north -geometry +0+220 -composite \
            -quality 90 "$out/portrait-$i.jpg"
    done
    ;;
phone)
    n=${3:-16}
    for i in $(seq 0 $((n - 1))); do
        f=${faces[$((i * 53 % ${#faces[@]}))]}
        convert -size 1000x750 -seed "$i" plasma:wheat-steelblue -resize 4000x3000 -attenuate 0.2 +noise Gaussian \
            \( "$f" -resize x1200 \) -gravity center -composite \
            -rotate -90 -quality 92 "$out/phone-$i.jpg"
        # An APP1 Exif segment right after SOI, orientation 6 (turn a quarter clockwise to show).
        python3 - "$out/phone-$i.jpg" <<'PY'
import struct, sys
p = sys.argv[1]
b = open(p, "rb").read()
tiff = b"MM\0*" + struct.pack(">I", 8) + struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, 6, 0) + struct.pack(">I", 0)
app1 = b"\xff\xe1" + struct.pack(">H", 2 + 6 + len(tiff)) + b"Exif\0\0" + tiff
open(p, "wb").write(b[:2] + app1 + b[2:])
PY
    done
    ;;
many | many-copies)
    n=${3:-100000}
    # Each source photo gets one private copy with a unique comment appended after the JPEG data (decoders
    # stop at the end marker), filed under the class of its source folder. `many` makes the folder of hard
    # links to those copies, n / sources per copy, so 100,000 files take the disk space of the sources;
    # `many-copies` copies each with its own trailer instead, so every file is unique.
    src="$out/.sources"
    mkdir -p "$src" "$out/male" "$out/female"
    python3 - "$data" "$src" "$out" "$n" "$kind" <<'PY'
import os, sys
data, src, out, n, kind = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
sources = []
for ds in ("web-faces", "utk-dev"):
    for cls in ("female", "male"):
        d = os.path.join(data, ds, cls)
        sources += [(os.path.join(d, f), cls) for f in sorted(os.listdir(d)) if f.endswith(".jpg")]
private = []
for j, (path, cls) in enumerate(sources):
    p = os.path.join(src, f"{j}.jpg")
    with open(path, "rb") as f:
        b = f.read()
    with open(p, "wb") as f:
        f.write(b + b"gc-bench-%08d" % j)
    private.append((p, cls))
for i in range(n):
    p, cls = private[i % len(private)]
    dst = os.path.join(out, cls, f"{i:06d}.jpg")
    if os.path.lexists(dst):
        os.unlink(dst)
    if kind == "many":
        os.link(p, dst)
    else:
        with open(p, "rb") as f:
            b = f.read()
        with open(dst, "wb") as f:
            f.write(b + b"gc-copy-%08d" % i)
print(f"{len(sources)} sources", file=sys.stderr)
PY
    ;;
*)
    echo "unknown kind $kind: portraits, phone, many or many-copies" >&2
    exit 2
    ;;
esac
echo "wrote $(find "$out" -name '*.jpg' -not -path '*/.sources/*' | wc -l) photos to $out"

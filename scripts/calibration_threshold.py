#!/usr/bin/env python3
"""The measurement behind the default "uncertain" threshold (docs/ACCURACY.md, "Calibration and the
uncertain answer"). Reads `eval --csv` outputs of one two-class model (female/male), fits one
temperature on the validation files by NLL (a grid on log T in [0.05, 20], as train does), and
prints the ECE before/after and, per threshold, the share of uncertain answers and the accuracy
(Wilson 95% interval) of the confident ones on each set. Standard library only.

    gender-classifier eval DIR --split validation --csv > wf-val.csv   # one per dataset and split
    python3 scripts/calibration_threshold.py --val wf-val.csv utk-val.csv --test wf-test.csv utk-test.csv
"""
import argparse, csv, math


def load(path):
    rows = []
    for r in csv.DictReader(open(path)):
        pf, pm = float(r["p_female"]), float(r["p_male"])
        # Two classes: the male-minus-female logit is recovered from the probabilities (eval
        # prints 5 decimals, so |z| is capped near 11.5; that barely moves the fit).
        rows.append((math.log(max(pm, 1e-6)) - math.log(max(pf, 1e-6)), int(r["label"] == "male")))
    return rows


def p_male(z, t):
    return 1 / (1 + math.exp(-z / t))


def nll(rows, t):
    return -sum(math.log(max(p_male(z, t) if y else 1 - p_male(z, t), 1e-12)) for z, y in rows) / len(rows)


def fit(rows):
    lo, hi = math.log(0.05), math.log(20)
    return min((nll(rows, math.exp(lo + (hi - lo) * i / 400)), math.exp(lo + (hi - lo) * i / 400)) for i in range(401))[1]


def ece(rows, t, bins=15):
    b = [[0, 0, 0.0] for _ in range(bins)]
    for z, y in rows:
        pm = p_male(z, t)
        conf = max(pm, 1 - pm)
        k = min(max(math.ceil(conf * bins), 1), bins) - 1
        b[k][0] += 1
        b[k][1] += int((pm >= 0.5) == bool(y))
        b[k][2] += conf
    return sum(abs(right - c) for _, right, c in b) / len(rows)


def wilson(k, n, z=1.96):
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    d = 1 + z * z / n
    c = p + z * z / (2 * n)
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return ((c - h) / d, (c + h) / d)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--val", nargs="+", required=True)
    ap.add_argument("--test", nargs="*", default=[])
    ap.add_argument("--thresholds", default="0.5,0.6,0.7,0.75,0.8,0.85,0.9,0.95")
    a = ap.parse_args()
    sets = {f"val {p}": load(p) for p in a.val} | {f"test {p}": load(p) for p in a.test}
    val = [r for p in a.val for r in sets[f"val {p}"]]
    t = fit(val)
    print(f"temperature fitted on {len(val)} validation photos: {t:.3f}")
    for name, rows in sets.items():
        print(f"{name}: n {len(rows)}, ECE {ece(rows, 1):.4f} before, {ece(rows, t):.4f} after")
    for th in map(float, a.thresholds.split(",")):
        for name, rows in sets.items():
            conf = [(max(p_male(z, t), 1 - p_male(z, t)), (p_male(z, t) >= 0.5) == bool(y)) for z, y in rows]
            sure = [ok for p, ok in conf if p >= th]
            lo, hi = wilson(sum(sure), len(sure))
            print(
                f"{th:.2f} {name}: uncertain {len(rows) - len(sure)}/{len(rows)}, confident right "
                f"{sum(sure)}/{len(sure)} = {100 * sum(sure) / max(len(sure), 1):.1f}% (95% CI {100 * lo:.1f}-{100 * hi:.1f}%)"
            )


if __name__ == "__main__":
    main()

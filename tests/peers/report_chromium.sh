#!/usr/bin/env bash
# Checks that the `rawgraph eval --report` page renders in headless
# Chromium: synthesises two DNGs (noise-free and ISO 1600) from the demo
# scene, evaluates the default pipeline on them with --report, takes a
# screenshot and checks that the page, its crop images and its inline SVG
# chart are there and that the screenshot is not blank.
# Needs the Debian package `chromium`; fails when it is missing.
set -euo pipefail
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
CHROME="$(command -v chromium || command -v chromium-browser || true)"
if [ -z "$CHROME" ]; then
    echo "report_chromium: chromium not found (apt-get install -y chromium)" >&2
    exit 1
fi
# RAWGRAPH_BIN: an already built binary (CI passes the test build's);
# otherwise build one.
BIN="${RAWGRAPH_BIN:-}"
if [ -z "$BIN" ]; then
    cargo build --quiet
    BIN=target/debug/rawgraph
fi
T="$(mktemp -d)"
trap 'rm -rf "$T"' EXIT
"$BIN" synth --demo --demo-size 512x384 --noise none --seed 5 -o "$T/clean" >/dev/null
"$BIN" synth --demo --demo-size 512x384 --noise iso:1600 --seed 5 -o "$T/noisy" >/dev/null
"$BIN" eval "$T/clean" "$T/noisy" --protocol dng --pipeline default \
    --report "$T/report" --json "$T/eval.json" --csv "$T/eval.csv" >"$T/eval.txt"
PAGE="$T/report/index.html"
test -s "$PAGE"
grep -q "<svg" "$PAGE"
n_img=$(grep -o 'src="img/[^"]*"' "$PAGE" | wc -l)
[ "$n_img" -eq 6 ] || { echo "report_chromium: expected 6 crops, found $n_img" >&2; exit 1; }
for f in $(grep -o 'src="img/[^"]*"' "$PAGE" | sed 's/src="//; s/"$//'); do
    test -s "$T/report/$f" || { echo "report_chromium: missing $f" >&2; exit 1; }
done
FLAGS=(--headless --no-sandbox --disable-gpu --disable-background-networking)
timeout 120 "$CHROME" "${FLAGS[@]}" --dump-dom "file://$PAGE" 2>/dev/null >"$T/dom.html"
grep -q "<svg" "$T/dom.html" && grep -q "0000_error.png" "$T/dom.html" || {
    echo "report_chromium: Chromium's DOM lacks the chart or the crops" >&2; exit 1; }
timeout 120 "$CHROME" "${FLAGS[@]}" --window-size=1200,1600 \
    --screenshot="$T/shot.png" "file://$PAGE" >/dev/null 2>&1
size=$(stat -c %s "$T/shot.png")
# A blank page compresses to a few KB; the crops make it hundreds of KB.
[ "$size" -gt 100000 ] || { echo "report_chromium: screenshot is only $size bytes (blank page?)" >&2; exit 1; }
mkdir -p target
cp "$T/shot.png" target/eval-report-screenshot.png
echo "report_chromium: OK (screenshot $size bytes -> target/eval-report-screenshot.png)"

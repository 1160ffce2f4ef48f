#!/usr/bin/env bash
# Peer check of the DNG writer: dcraw and LibRaw's dcraw_emu open our
# synthetic DNGs and render them within 1 dB (CPSNR, 10-px border) of our
# default pipeline, against the ideal rendering, on noise-free files.
# Needs the Debian packages dcraw and libraw-bin (installed by .ci/run);
# fails when they are missing. Run from anywhere in the repository.
set -euo pipefail
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
for bin in dcraw dcraw_emu; do
    if ! command -v "$bin" >/dev/null 2>&1; then
        echo "dng_peers: $bin not found (apt-get install -y dcraw libraw-bin)" >&2
        exit 1
    fi
done
RAWGRAPH_REQUIRE_PEERS=1 cargo test --test dng_peers -- --nocapture

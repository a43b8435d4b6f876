#!/usr/bin/env bash
# Reproduces the "HTTP through the mesh" section of BENCHMARKS.md (issue 17):
# direct, two sidecars (HTTP layer, and the port declared opaque) and a pair
# of HAProxy 2.6 (mode http, mode tcp) with mutual TLS 1.3 from the same
# throw-away CA, on the same Go HTTP backend, side by side in one run:
# wrk keep-alive and Connection: close, h2load (h2c), a fixed-rate open-loop
# client, and idle keep-alive connections held open; printed as Markdown
# tables with ratios.
#
#   bench/mesh.sh                                  # everything, 3 rounds
#   bench/mesh.sh -loads keep-alive,close -rounds 1
#   bench/mesh.sh -paths direct,sidecar-http,haproxy-http -profile /tmp/prof
#   bench/mesh.sh -h                               # all flags of bench/mesh
#
# It installs haproxy, wrk and nghttp2-client (h2load) from Debian when they
# are missing (as root), builds examples/sidecar and raises the descriptor
# limit to the hard limit. Not part of `go test ./...`: a script.
set -euo pipefail
cd "$(dirname "$0")"

need=()
for p in haproxy:haproxy wrk:wrk h2load:nghttp2-client; do
  command -v "${p%%:*}" >/dev/null 2>&1 || need+=("${p#*:}")
done
if ((${#need[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # The package may start a system instance; the benchmark starts its own.
  (command -v service >/dev/null && service haproxy stop) >/dev/null 2>&1 || true
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd .. && go build -o "$tmp/sidecar" ./examples/sidecar)
go build -o "$tmp/mesh" ./mesh
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
"$tmp/mesh" -sidecar "$tmp/sidecar" "$@"

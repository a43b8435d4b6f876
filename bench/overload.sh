#!/usr/bin/env bash
# Reproduces the "hostile load" section of BENCHMARKS.md: the real binaries of
# examples/multiplex (detect.Mux) and examples/sidecar (a pair with mutual TLS)
# under silent floods, slowloris, a connect burst, requests their clients
# abandon, and descriptor exhaustion, with a real client measured throughout
# (issue 15).
#
#   bench/overload.sh                                      # everything (about 12 minutes)
#   bench/overload.sh -targets sidecar -scenarios silent:10000
#   bench/overload.sh -h                                   # all flags
#
# Linux only; uses prlimit (util-linux) for the descriptor-exhaustion rows and
# raises its own descriptor limit to the hard limit (10,000 silent clients
# need 10,000 descriptors here and as many in the target).
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/multiplex" ../examples/multiplex
go build -o "$tmp/sidecar" ../examples/sidecar
go build -o "$tmp/overload" ./overload
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
"$tmp/overload" -multiplex "$tmp/multiplex" -sidecar "$tmp/sidecar" \
  -targets multiplex,sidecar \
  -scenarios silent:5000,silent:10000,silentfresh:5000,greeting:1000,slowloris:2000,burst:2000,abandon:500,fd:256 "$@"

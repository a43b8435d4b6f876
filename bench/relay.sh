#!/usr/bin/env bash
# Reproduces the "splice" and "relay under load" sections of BENCHMARKS.md:
# direct loopback, HAProxy (TCP mode, option splice-auto), socat, a bare
# io.Copy relay, a 32 KiB-buffer relay, splice.Join and splice.Loop (relayd
# -mode loop: StartDial after Go's Accept; -mode loopserve: ServeDial), side by side in one
# run, printed as Markdown tables with ratios.
#
#   bench/relay.sh                        # everything (bulk, load, idle)
#   bench/relay.sh -sections bulk         # issue 4's bulk table only
#   bench/relay.sh -sections load,idle    # issue 9's tables only
#   bench/relay.sh -h                     # all flags of relaybench
#
# It installs haproxy, socat and wrk from Debian when they are missing (as
# root) and raises the descriptor limit to the hard limit. When perf is on
# the PATH, the load section also counts each relay's system calls per
# request (one extra wrk run each; -count-syscalls=false skips it). Not part
# of `go test ./...`: it is a separate module and a script.
set -euo pipefail
cd "$(dirname "$0")"

need=()
for p in haproxy socat wrk; do
  command -v "$p" >/dev/null 2>&1 || need+=("$p")
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
go build -o "$tmp/relayd" ./relayd
go build -o "$tmp/relaybench" ./relaybench
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
"$tmp/relaybench" -relayd "$tmp/relayd" "$@"

#!/usr/bin/env bash
# make bench: the operator's release binary in both polling modes, one after the other, against
# a real control plane and the emulator; prints figures (docs/performance.md), asserts nothing.
#
#   N=1000 hack/bench.sh          the workload: N Volumes created at once, then deleted
#   N=50 STEADY=10s hack/bench.sh what CI runs, as a smoke test of the harness
#
# Environment (all optional): N (1000), MODES (per-object,inventory), TRANSITION (2s),
# RESYNC (30s), STEADY (60s), DEADLINE (1800s), OPERATOR_ARGS (more `cloudvol run` flags),
# CLOUDVOL_CP_DIR (the control plane's folder; the bench's own by default, stopped at the end
# unless BENCH_KEEP_CONTROL_PLANE=1).
set -euo pipefail
cd "$(dirname "$0")/.."

export CLOUDVOL_CP_DIR=${CLOUDVOL_CP_DIR:-${TMPDIR:-/tmp}/cloudvol-bench-control-plane-$(id -u)}

echo "bench: building the release binaries" >&2
cargo build --release --quiet -p cloudvol -p cloudvol-emulator --bins
cargo bench --quiet --bench polling --no-run

if [[ -z "${BENCH_KEEP_CONTROL_PLANE:-}" ]]; then
  trap 'hack/control-plane.sh stop >/dev/null 2>&1 || true' EXIT
fi
eval "$(hack/control-plane.sh start)"

export CLOUDVOL_BIN=$PWD/target/release/cloudvol
export EMULATOR_BIN=$PWD/target/release/cloudvol-emulator
cargo bench --quiet --bench polling

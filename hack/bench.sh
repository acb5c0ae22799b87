#!/usr/bin/env bash
# make bench: the operator's release binary in both polling modes, one after the other, against
# a real control plane and the emulator; prints figures (docs/performance.md), asserts nothing.
#
#   N=1000 hack/bench.sh                        the workload: N Volumes created at once, then deleted
#   BENCH_PROFILE=debug N=50 STEADY=10s hack/bench.sh   CI's smoke test of the harness (debug
#                                               binaries, as `make test` left them: no figure means anything)
#
# Environment (all optional): N (1000), MODES (per-object,inventory), TRANSITION (2s),
# RESYNC (30s), STEADY (60s), DEADLINE (1800s), OPERATOR_ARGS (more `cloudvol run` flags),
# BENCH_PROFILE (release), CLOUDVOL_CP_DIR (the control plane's folder; the bench's own by
# default, stopped at the end unless BENCH_KEEP_CONTROL_PLANE=1).
set -euo pipefail
cd "$(dirname "$0")/.."

export CLOUDVOL_CP_DIR=${CLOUDVOL_CP_DIR:-${TMPDIR:-/tmp}/cloudvol-bench-control-plane-$(id -u)}
profile=${BENCH_PROFILE:-release}

case "$profile" in
  release)
    echo "bench: building the release binaries" >&2
    cargo build --release --quiet -p cloudvol -p cloudvol-emulator --bins
    cargo bench --quiet --bench polling --no-run
    run=(cargo bench --quiet --bench polling)
    ;;
  debug)
    cargo build --quiet -p cloudvol -p cloudvol-emulator --bins
    cargo test --quiet --bench polling --no-run
    run=(cargo test --quiet --bench polling)
    ;;
  *)
    echo "bench: BENCH_PROFILE is release or debug, not $profile" >&2
    exit 2
    ;;
esac

if [[ -z "${BENCH_KEEP_CONTROL_PLANE:-}" ]]; then
  trap 'hack/control-plane.sh stop >/dev/null 2>&1 || true' EXIT
fi
eval "$(hack/control-plane.sh start)"

export CLOUDVOL_BIN=$PWD/target/$profile/cloudvol
export EMULATOR_BIN=$PWD/target/$profile/cloudvol-emulator
"${run[@]}"

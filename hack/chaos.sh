#!/usr/bin/env bash
# The chaos soak (docs/crash-safety.md): Volumes, VolumeImages and ImageShares against a real
# kube-apiserver and the emulator, while random cloud faults are injected and the real operator
# binary is killed with SIGKILL and started again, during creation and then during deletion.
# Prints one line,
#   chaos seed=... duplicates=0 leaks=0 stuck=0 not_ready=0 panics=0 foreign=0 exits=0 ...
# and exits non-zero when any of those counts is not 0.
#
#   hack/chaos.sh                       one cycle, a seed from the clock (printed)
#   hack/chaos.sh --seed 7              the same schedule as an earlier run with seed 7
#   hack/chaos.sh --duration 20m        cycles until 20 minutes have passed
#   hack/chaos.sh --seed 7 --volumes 12 --images 12 --shares 4 --duration 20m
#
# Every option is also an environment variable (CHAOS_SEED, CHAOS_DURATION, ...); the options
# win. The control plane is hack/control-plane.sh's (CLOUDVOL_CP_DIR picks its folder).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  cat <<'USAGE'
usage: hack/chaos.sh [options]
  --seed N          fixes the schedule (faults, kills, order); default: from the clock
  --duration D      run cycles until D has passed (at least one): 0s, 90s, 20m
  --volumes N       Volumes per cycle (8)
  --images N        VolumeImages per cycle, one from each of the first Volumes (4)
  --shares N        ImageShares per cycle of the first VolumeImages (2)
  --id-shares N     ImageShares per cycle of images put straight into the cloud (2)
  --phase D         how long the chaos lasts in each phase, creation and deletion (15s)
  --kills N         SIGKILLs per phase at random moments (3)
  --crashes N       SIGKILLs per phase while the cloud holds a write's answer (3)
  --faults N        fault rules per phase (30)
  --down D          longest time the operator stays down after a kill (1500ms)
  --settle D        how long objects get to be Ready, or gone, after the chaos (180s)
  --transition D    the emulator's transitions (300ms)
  --resync D        the operator's --resync-period (30s)
USAGE
}

while [[ $# -gt 0 ]]; do
  case $1 in
    -h|--help) usage; exit 0 ;;
    --seed|--duration|--volumes|--images|--shares|--id-shares|--phase|--kills|--crashes|--faults|--down|--settle|--transition|--resync)
      [[ $# -ge 2 ]] || { echo "chaos: $1 needs a value" >&2; exit 2; }
      name=${1#--}; name=${name//-/_}
      export "CHAOS_${name^^}=$2"
      shift 2 ;;
    *) echo "chaos: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done

# The soak is an ignored test of its own binary; cargo builds the operator binary it runs.
exec "${CARGO:-cargo}" test --test chaos -- --ignored --exact chaos_soak --nocapture

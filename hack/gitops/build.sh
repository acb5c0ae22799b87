#!/usr/bin/env bash
# Builds the GitOps checkers (cmd/kstatus and cmd/argocd-health) once per content: into
# ${CLOUDVOL_CACHE:-~/.cache/cloudvol}/gitops-<hash of go.mod, go.sum and the Go sources>/,
# and prints that folder. A second run with the same sources only prints it.
set -euo pipefail
cd "$(dirname "$0")"

CACHE=${CLOUDVOL_CACHE:-$HOME/.cache/cloudvol}
die() { echo "hack/gitops/build.sh: error: $*" >&2; exit 1; }
command -v go >/dev/null 2>&1 || die "Go is required to build the kstatus and Argo CD health checkers (hack/gitops)"
command -v flock >/dev/null 2>&1 || die "flock is required"

# Each file's name and contents, in a stable order.
hash=$(find . -name '*.go' -o -name go.mod -o -name go.sum | LC_ALL=C sort |
  while read -r f; do echo "== $f"; cat "$f"; done | sha256sum | cut -c1-16)
dir="$CACHE/gitops-$hash"
if [ -x "$dir/kstatus" ] && [ -x "$dir/argocd-health" ]; then
  echo "$dir"
  exit 0
fi
mkdir -p "$dir"
exec 9>"$dir/.lock"
flock 9
if ! { [ -x "$dir/kstatus" ] && [ -x "$dir/argocd-health" ]; }; then
  start=$SECONDS
  echo "hack/gitops/build.sh: building kstatus and argocd-health into $dir" >&2
  tmp=$(mktemp -d "$dir/build.XXXXXX")
  CGO_ENABLED=0 go build -trimpath -o "$tmp/" ./cmd/kstatus ./cmd/argocd-health >&2 ||
    { rm -rf "$tmp"; die "go build failed (see above)"; }
  mv "$tmp/kstatus" "$tmp/argocd-health" "$dir/"
  rm -rf "$tmp"
  echo "hack/gitops/build.sh: built in $((SECONDS - start))s" >&2
fi
echo "$dir"

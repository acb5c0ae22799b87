#!/usr/bin/env bash
# A real Kubernetes control plane (etcd + kube-apiserver) on loopback, for tests
# and the demo. No kubelet, no controller-manager: what envtest runs.
#
#   hack/control-plane.sh start     idempotent; prints `export KUBECONFIG=...` lines to eval
#   hack/control-plane.sh stop      stops it and removes its state
#   hack/control-plane.sh status    exit 0 when it answers /readyz
#   hack/control-plane.sh binaries  builds (or finds) the binaries; prints their folder
#
# Binaries come from $KUBEBUILDER_ASSETS when it is set (what envtest users
# already have). Otherwise they are built with Go from Go modules and cached,
# keyed by version, under ${CLOUDVOL_CACHE:-~/.cache/cloudvol}, so only the
# first run on a machine pays for the build.
#
# Environment:
#   CLOUDVOL_CP_DIR   state folder (certificates, data, logs, kubeconfig);
#                     default ${TMPDIR:-/tmp}/cloudvol-control-plane-$UID.
#                     Give each parallel control plane its own folder.
set -euo pipefail

K8S_VERSION=1.33.13
ETCD_VERSION=3.6.16

CACHE=${CLOUDVOL_CACHE:-$HOME/.cache/cloudvol}
STATE=${CLOUDVOL_CP_DIR:-${TMPDIR:-/tmp}/cloudvol-control-plane-$(id -u)}

log() { echo "control-plane: $*" >&2; }
die() { log "error: $*"; exit 1; }

need() { command -v "$1" >/dev/null 2>&1 || die "$1 is required but not installed${2:+ ($2)}"; }

# --- binaries -----------------------------------------------------------------

build_etcd() {
  local out=$1 work
  need go "install Go, or set KUBEBUILDER_ASSETS to a folder holding etcd and kube-apiserver"
  work=$(mktemp -d "$CACHE/build-etcd.XXXXXX")
  log "building etcd v$ETCD_VERSION from Go modules (once per machine) in $work"
  cat >"$work/main.go" <<'EOF'
// A wrapper so etcd's server module builds with `go build`: its own go.mod
// carries replace directives that make `go install` refuse it.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
  (
    cd "$work"
    go mod init cloudvol.dev/build/etcd >/dev/null 2>&1
    go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION" >&2
    go mod tidy >&2
    CGO_ENABLED=0 go build -trimpath -o "$out.tmp" . >&2
  ) || { rm -rf "$work"; die "building etcd failed (see above)"; }
  mv "$out.tmp" "$out"
  rm -rf "$work"
}

build_apiserver() {
  local out=$1 work gomod minor
  need go "install Go, or set KUBEBUILDER_ASSETS to a folder holding etcd and kube-apiserver"
  work=$(mktemp -d "$CACHE/build-apiserver.XXXXXX")
  minor=$(echo "$K8S_VERSION" | cut -d. -f2)
  log "building kube-apiserver v$K8S_VERSION from Go modules (once per machine, ~10-20 min on 2 cores) in $work"
  cat >"$work/main.go" <<'EOF'
// A wrapper module for k8s.io/kubernetes's kube-apiserver: that module needs its
// k8s.io staging modules replaced by their published versions to build.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() { os.Exit(cli.Run(app.NewAPIServerCommand())) }
EOF
  (
    cd "$work"
    go mod init cloudvol.dev/build/kube-apiserver >/dev/null 2>&1
    gomod=$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
    [ -f "$gomod" ] || { echo "cannot download k8s.io/kubernetes@v$K8S_VERSION" >&2; exit 1; }
    # Every `k8s.io/x => ./staging/...` of kubernetes's go.mod becomes
    # `k8s.io/x => k8s.io/x v0.<minor>.<patch>` here.
    {
      echo "require k8s.io/kubernetes v$K8S_VERSION"
      echo "replace ("
      sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\t\1 => \1 v0.'"${K8S_VERSION#*.}"'#p' "$gomod"
      echo ")"
    } >>go.mod
    go mod tidy >&2
    CGO_ENABLED=0 go build -trimpath -ldflags "\
      -X k8s.io/component-base/version.gitVersion=v$K8S_VERSION \
      -X k8s.io/component-base/version.gitMajor=1 \
      -X k8s.io/component-base/version.gitMinor=$minor \
      -X k8s.io/component-base/version.gitTreeState=clean" \
      -o "$out.tmp" . >&2
  ) || { rm -rf "$work"; die "building kube-apiserver failed (see above)"; }
  mv "$out.tmp" "$out"
  rm -rf "$work"
}

# Prints the folder holding etcd and kube-apiserver, building them if needed.
binaries() {
  if [ -n "${KUBEBUILDER_ASSETS:-}" ]; then
    for b in etcd kube-apiserver; do
      [ -x "$KUBEBUILDER_ASSETS/$b" ] || die "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS has no executable $b"
    done
    echo "$KUBEBUILDER_ASSETS"
    return
  fi
  local dir="$CACHE/k8s-$K8S_VERSION-etcd-$ETCD_VERSION"
  mkdir -p "$dir"
  # One builder at a time per machine; others wait for its result.
  exec 9>"$dir/.lock"
  flock 9
  [ -x "$dir/etcd" ] || build_etcd "$dir/etcd"
  [ -x "$dir/kube-apiserver" ] || build_apiserver "$dir/kube-apiserver"
  exec 9>&-
  echo "$dir"
}

# --- running ------------------------------------------------------------------

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

alive() { [ -f "$STATE/$1.pid" ] && kill -0 "$(cat "$STATE/$1.pid")" 2>/dev/null; }

ready() {
  [ -f "$STATE/kubeconfig" ] && [ -f "$STATE/port" ] || return 1
  curl -sf --max-time 2 --cacert "$STATE/pki/ca.crt" \
    --cert "$STATE/pki/admin.crt" --key "$STATE/pki/admin.key" \
    "https://127.0.0.1:$(cat "$STATE/port")/readyz" >/dev/null 2>&1
}

print_env() {
  echo "export KUBECONFIG=$STATE/kubeconfig"
  echo "export CLOUDVOL_APISERVER=https://127.0.0.1:$(cat "$STATE/port")"
}

make_pki() {
  local pki=$STATE/pki
  mkdir -p "$pki"
  (
    cd "$pki"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=cloudvol-test-ca" \
      -keyout ca.key -out ca.crt 2>/dev/null
    # The API server's serving certificate.
    openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
      -keyout serving.key -out serving.csr 2>/dev/null
    # x509 v3 extensions throughout: rustls refuses v1 certificates.
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\n' >serving.ext
    printf 'extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n' >client.ext
    openssl x509 -req -in serving.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile serving.ext -out serving.crt 2>/dev/null
    # The admin identity: a client certificate in system:masters.
    openssl req -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=cloudvol-admin" \
      -keyout admin.key -out admin.csr 2>/dev/null
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile client.ext -out admin.crt 2>/dev/null
    # Service-account token signing keys.
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  )
}

write_kubeconfig() {
  local port=$1 pki=$STATE/pki
  cat >"$STATE/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: cloudvol-test
  cluster:
    server: https://127.0.0.1:$port
    certificate-authority-data: $(base64 -w0 <"$pki/ca.crt")
users:
- name: cloudvol-admin
  user:
    client-certificate-data: $(base64 -w0 <"$pki/admin.crt")
    client-key-data: $(base64 -w0 <"$pki/admin.key")
contexts:
- name: cloudvol-test
  context:
    cluster: cloudvol-test
    user: cloudvol-admin
    namespace: default
current-context: cloudvol-test
EOF
}

start() {
  need openssl; need curl; need python3; need flock
  mkdir -p "$STATE"
  # Serialises concurrent starts; the servers must not inherit the lock (8>&- below).
  exec 8>"$STATE/.lock"
  flock 8
  if alive kube-apiserver && alive etcd && ready; then
    print_env
    return
  fi
  stop_processes
  local bin etcd_port peer_port api_port
  bin=$(binaries)
  rm -rf "$STATE/etcd-data" "$STATE/pki"
  make_pki
  etcd_port=$(free_port); peer_port=$(free_port); api_port=$(free_port)

  "$bin/etcd" --name cloudvol --data-dir "$STATE/etcd-data" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" \
    --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "cloudvol=http://127.0.0.1:$peer_port" \
    --unsafe-no-fsync \
    >"$STATE/etcd.log" 2>&1 </dev/null 8>&- &
  echo $! >"$STATE/etcd.pid"

  "$bin/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --secure-port "$api_port" \
    --cert-dir "$STATE/pki" \
    --tls-cert-file "$STATE/pki/serving.crt" --tls-private-key-file "$STATE/pki/serving.key" \
    --client-ca-file "$STATE/pki/ca.crt" \
    --service-account-issuer "https://127.0.0.1:$api_port" \
    --service-account-key-file "$STATE/pki/sa.pub" \
    --service-account-signing-key-file "$STATE/pki/sa.key" \
    --service-cluster-ip-range 10.0.0.0/24 \
    --authorization-mode RBAC \
    --disable-admission-plugins ServiceAccount \
    --allow-privileged=true \
    >"$STATE/kube-apiserver.log" 2>&1 </dev/null 8>&- &
  echo $! >"$STATE/kube-apiserver.pid"
  echo "$api_port" >"$STATE/port"
  write_kubeconfig "$api_port"

  local deadline=$((SECONDS + 90))
  until ready; do
    if ! alive etcd; then die "etcd exited; see $STATE/etcd.log: $(tail -n 5 "$STATE/etcd.log")"; fi
    if ! alive kube-apiserver; then die "kube-apiserver exited; see $STATE/kube-apiserver.log: $(tail -n 5 "$STATE/kube-apiserver.log")"; fi
    [ $SECONDS -lt $deadline ] || die "kube-apiserver not ready after 90s; see $STATE/kube-apiserver.log"
    sleep 0.2
  done
  log "ready at https://127.0.0.1:$api_port (state in $STATE)"
  print_env
}

stop_processes() {
  local p pid
  for p in kube-apiserver etcd; do
    if [ -f "$STATE/$p.pid" ]; then
      pid=$(cat "$STATE/$p.pid")
      if kill "$pid" 2>/dev/null; then
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
      fi
      rm -f "$STATE/$p.pid"
    fi
  done
}

stop() {
  [ -d "$STATE" ] || return 0
  stop_processes
  rm -rf "$STATE"
  log "stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) alive kube-apiserver && ready ;;
  binaries) binaries ;;
  *) echo "usage: $0 start|stop|status|binaries" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# `make demo`: a real control plane with cloudvol's CRDs and the examples applied.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "Starting the control plane (the first run builds kube-apiserver and etcd; later runs reuse them)"
eval "$(hack/control-plane.sh start)"

step "Building cloudvol"
cargo build -q --bin cloudvol

step "Installing the CRDs"
target/debug/cloudvol crds | kubectl apply --server-side -f -
kubectl wait --for=condition=Established crd/volumes.cloudvol.dev crd/volumeimages.cloudvol.dev crd/imageshares.cloudvol.dev --timeout=60s

step "Applying examples/ into namespace cloudvol-demo"
kubectl create namespace cloudvol-demo --dry-run=client -o yaml | kubectl apply -f -
kubectl apply -n cloudvol-demo -f examples/

step "kubectl get cloudvol -n cloudvol-demo"
kubectl get cloudvol -n cloudvol-demo

step "kubectl explain volume.spec.resource.size"
kubectl explain volume.spec.resource.size

cat <<MSG

The control plane keeps running. Use it with:
  export KUBECONFIG=$KUBECONFIG
Stop it with:
  make control-plane-stop
MSG

#!/usr/bin/env bash
# `make demo`: cloudvol end to end on this machine, with no cloud account.
#
#   hack/demo.sh          run the demo (idempotent; leaves everything running to play with)
#   hack/demo.sh stop     stop the operator, the emulator and the control plane
#
# It starts a real control plane (etcd + kube-apiserver), the cloudvol-emulator on
# 127.0.0.1:18776 (what examples/00-credentials.yaml points at), installs the CRDs, runs the
# operator, applies examples/ into the namespace cloudvol-demo, and walks through what cloudvol
# does: a volume made Ready, the deletion guard of an attached volume, a protected golden image
# shared with the partner tenant, the partner's own volume made from it, and the image's
# deletion waiting for a volume still being made from it.
set -euo pipefail
cd "$(dirname "$0")/.."

STATE=${CLOUDVOL_DEMO_DIR:-${TMPDIR:-/tmp}/cloudvol-demo-$(id -u)}
EMULATOR_ADDR=127.0.0.1:18776
OPERATOR_ADDR=127.0.0.1:18080
NS=cloudvol-demo
mkdir -p "$STATE"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

# The emulator's volumes, one per line: id, status, attached server.
cloud_volumes() {
  curl -s "$EMU/_admin/volumes" | python3 -c 'import json, sys
volumes = json.load(sys.stdin)["volumes"]
for v in volumes:
    servers = ",".join(a["server_id"] for a in v["attachments"])
    print("  ", v["id"], v["name"], v["status"], servers)
if not volumes:
    print("   (none)")'
}

# The emulator's images, one per line: id, name, status, visibility, protected.
cloud_images() {
  curl -s "$EMU/_admin/images" | python3 -c 'import json, sys
images = json.load(sys.stdin)["images"]
for i in images:
    print("  ", i["id"], i["name"], i["status"], i["visibility"], "protected" if i["protected"] else "")
if not images:
    print("   (none)")'
}

# The emulator's configuration: its two demo tenants, as without --config, and the default
# 300 ms per transition, except for volumes made from images, which stay `downloading` for a few
# seconds, long enough to watch a deletion wait for one.
emulator_config() {
  cat <<'YAML'
region: KR1
transitions:
  default: 300ms
  volume_download: 6s
tenants:
  - id: 6cdebe3eb0094910bc41f1d42ebe4cb7
    name: demo
    users:
      - username: demo
        password: demo-password
        application_credentials: [{id: demo-appcred, secret: demo-appcred-secret, name: demo-appcred}]
    scp: {access_key: demo-access-key, secret_key: demo-secret-key, account_id: demo-account}
  - id: 8989447062e04a818baf9e073fd04fa7
    name: partner
    users:
      - username: partner
        password: partner-password
    scp: {access_key: partner-access-key, secret_key: partner-secret-key, account_id: partner-account}
YAML
}

# The images the partner tenant sees, through the image API with the partner's own token.
partner_images() {
  local token
  token=$(curl -s "$EMU/identity/v2.0/tokens" -H 'Content-Type: application/json' \
    -d '{"auth":{"tenantId":"8989447062e04a818baf9e073fd04fa7","passwordCredentials":{"username":"partner","password":"partner-password"}}}' |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["access"]["token"]["id"])')
  curl -s "$EMU/image/v2/images" -H "X-Auth-Token: $token" | python3 -c 'import json, sys
images = json.load(sys.stdin)["images"]
for i in images:
    print("  ", i["id"], i["name"], i["visibility"], "owner", i["owner"])
if not images:
    print("   (none)")'
}

stop_pid() {
  local file=$STATE/$1.pid
  if [ -f "$file" ] && kill -0 "$(cat "$file")" 2>/dev/null; then
    kill "$(cat "$file")" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$(cat "$file")" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$file"
}

if [ "${1:-}" = stop ]; then
  stop_pid operator
  stop_pid emulator
  hack/control-plane.sh stop
  rm -rf "$STATE"
  exit 0
fi

step "Starting the control plane (the first run builds kube-apiserver and etcd; later runs reuse them)"
eval "$(hack/control-plane.sh start)"

step "Building cloudvol and cloudvol-emulator"
cargo build -q --bin cloudvol && cargo build -q -p cloudvol-emulator --bin cloudvol-emulator
BIN=target/debug

step "Starting the emulator on $EMULATOR_ADDR (two tenants: demo and partner; a volume from an image downloads for 6 s)"
stop_pid emulator
emulator_config >"$STATE/emulator.yaml"
"$BIN/cloudvol-emulator" --listen "$EMULATOR_ADDR" --config "$STATE/emulator.yaml" >"$STATE/emulator.log" 2>&1 &
echo $! >"$STATE/emulator.pid"
for _ in $(seq 1 100); do grep -q '^listening on' "$STATE/emulator.log" && break; sleep 0.1; done
head -n 1 "$STATE/emulator.log"
EMU=http://$EMULATOR_ADDR

step "Installing the CRDs"
"$BIN/cloudvol" crds | kubectl apply --server-side -f -
kubectl wait --for=condition=Established --timeout=60s \
  crd/volumes.cloudvol.dev crd/volumeimages.cloudvol.dev crd/imageshares.cloudvol.dev

# A short resync so that changes made behind cloudvol's back (the attach below) show within
# seconds; the default is 10m.
step "Starting the operator (logs: $STATE/operator.log)"
stop_pid operator
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
"$BIN/cloudvol" run --namespaces "$NS" --listen "$OPERATOR_ADDR" --log-format text --resync-period 5s \
  --leader-election-namespace "$NS" >"$STATE/operator.log" 2>&1 &
echo $! >"$STATE/operator.pid"
for _ in $(seq 1 100); do curl -sf "http://$OPERATOR_ADDR/readyz" >/dev/null && break; sleep 0.1; done
run curl -s "http://$OPERATOR_ADDR/readyz"; echo

if [ -n "$(kubectl get cloudvol -n "$NS" -o name 2>/dev/null)" ]; then
  step "Clearing the previous run's objects (the emulator starts empty)"
  run kubectl delete cloudvol --all -n "$NS" --timeout=60s
fi

step "Applying the credentials and a Volume"
start=$(date +%s%N)
run kubectl apply -n "$NS" -f examples/00-credentials.yaml -f examples/10-volume.yaml
run kubectl wait -n "$NS" --for=condition=Ready --timeout=120s cvol/demo-volume
echo "apply -> Ready took $(( ($(date +%s%N) - start) / 1000000 )) ms"
run kubectl get cloudvol -n "$NS"
ID=$(kubectl get cvol -n "$NS" demo-volume -o jsonpath='{.status.id}')

step "Growing the volume to 2 GiB"
run kubectl patch cvol -n "$NS" demo-volume --type merge -p '{"spec":{"resource":{"size":2}}}'
run kubectl wait -n "$NS" --for=jsonpath='{.status.resource.size}'=2 --timeout=60s cvol/demo-volume
run kubectl wait -n "$NS" --for=condition=Ready --timeout=60s cvol/demo-volume

step "The deletion guard: attach the volume to a server (as an instance would), then delete it"
run curl -s -X POST "$EMU/_admin/volumes/$ID/attach" -H 'Content-Type: application/json' \
  -d '{"server_id":"3f2a0000-0000-4000-8000-000000000001"}'; echo
run kubectl wait -n "$NS" --for=jsonpath='{.status.resource.status}'=in-use --timeout=60s cvol/demo-volume
run kubectl delete -n "$NS" cvol/demo-volume --wait=false
run kubectl wait -n "$NS" --for=condition=Stalled --timeout=60s cvol/demo-volume
run kubectl get -n "$NS" cvol demo-volume \
  -o jsonpath='{range .status.conditions[?(@.type=="Stalled")]}{.reason}: {.message}{"\n"}{end}'
OBJ_UID=$(kubectl get cvol -n "$NS" demo-volume -o jsonpath='{.metadata.uid}')
run kubectl get events -n "$NS" --field-selector "involvedObject.uid=$OBJ_UID,reason=VolumeInUse" \
  -o custom-columns=TYPE:.type,REASON:.reason,MESSAGE:.message
echo "The volume is still in the cloud:"
cloud_volumes

step "Detaching: the deletion proceeds by itself"
run curl -s -X POST "$EMU/_admin/volumes/$ID/detach" -H 'Content-Type: application/json' -d '{}'; echo
run kubectl wait -n "$NS" --for=delete --timeout=60s cvol/demo-volume
echo "Gone from the cloud too; what is left there:"
cloud_volumes

step "Re-creating the demo volume, and observing it read-only through an unmanaged import"
run kubectl apply -n "$NS" -f examples/10-volume.yaml -f examples/40-volume-import-unmanaged.yaml
run kubectl wait -n "$NS" --for=condition=Ready --timeout=120s cvol/demo-volume cvol/observed-volume
run kubectl get cloudvol -n "$NS"

step "A protected golden image made from the volume"
run kubectl apply -n "$NS" -f examples/20-volume-image.yaml
run kubectl wait -n "$NS" --for=condition=Ready --timeout=120s vimg/golden-image
run kubectl get cloudvol -n "$NS"
IMAGE=$(kubectl get vimg -n "$NS" golden-image -o jsonpath='{.status.id}')

step "The protected image is never deleted"
run kubectl delete -n "$NS" vimg/golden-image --wait=false
run kubectl wait -n "$NS" --for=condition=Stalled --timeout=60s vimg/golden-image
run kubectl get -n "$NS" vimg golden-image \
  -o jsonpath='{range .status.conditions[?(@.type=="Stalled")]}{.reason}: {.message}{"\n"}{end}'
echo "The image is still in the cloud:"
cloud_images

step "Unprotecting it through the spec lets the deletion proceed"
run kubectl patch -n "$NS" vimg golden-image --type merge -p '{"spec":{"resource":{"protected":false}}}'
run kubectl wait -n "$NS" --for=delete --timeout=60s vimg/golden-image
echo "Image $IMAGE is gone; the source volume is untouched:"
cloud_images
cloud_volumes

step "Making the golden image again, to keep"
run kubectl apply -n "$NS" -f examples/20-volume-image.yaml
run kubectl wait -n "$NS" --for=condition=Ready --timeout=120s vimg/golden-image
run kubectl get cloudvol -n "$NS"

step "Sharing the golden image with the partner tenant, accepted with the partner's credentials"
run kubectl apply -n "$NS" -f examples/30-image-share.yaml
run kubectl wait -n "$NS" --for=condition=Ready --timeout=120s ishare/golden-image-to-partner
run kubectl get -n "$NS" ishare golden-image-to-partner \
  -o jsonpath='{range .status.members[*]}{.tenantID}: {.status}{"\n"}{end}'
echo "The partner tenant now lists the image (its own token, the image API):"
partner_images
run kubectl get cloudvol -n "$NS"

step "The partner tenant makes its own volume from the shared golden image, with its own credentials"
run kubectl apply -n "$NS" -f examples/50-volume-from-image.yaml
run kubectl wait -n "$NS" --for=jsonpath='{.status.resource.status}'=downloading --timeout=120s cvol/partner-volume
run kubectl get -n "$NS" cvol partner-volume \
  -o jsonpath='{range .status.conditions[?(@.type=="Reconciling")]}{.reason}: {.message}{"\n"}{end}'
run kubectl wait -n "$NS" --for=condition=Ready --timeout=120s cvol/partner-volume
run kubectl get -n "$NS" cvol partner-volume \
  -o jsonpath='made from image {.status.sourceImageID}: {.status.resource.status}, bootable {.status.resource.bootable}{"\n"}'
echo "In the cloud, the volume is the partner tenant's:"
curl -s "$EMU/_admin/volumes" | python3 -c 'import json, sys
for v in json.load(sys.stdin)["volumes"]:
    if v["name"].startswith("partner-volume"):
        print("  ", v["id"], v["name"], v["status"], "tenant", v["os-vol-tenant-attr:tenant_id"], "from image", (v.get("volume_image_metadata") or {}).get("image_id"))'

step "Deleting the golden image waits while a volume is still being made from it"
run kubectl apply -n "$NS" -f - <<'YAML'
apiVersion: cloudvol.dev/v1alpha1
kind: Volume
metadata:
  name: partner-volume-2
spec:
  cloudCredentialsRef:
    secretName: cloudvol-demo-credentials
    cloudName: partner
  resource:
    name: partner-volume-2
    size: 2
    image:
      ref:
        name: golden-image
YAML
run kubectl wait -n "$NS" --for=jsonpath='{.status.resource.status}'=downloading --timeout=120s cvol/partner-volume-2
run kubectl delete -n "$NS" vimg/golden-image --wait=false
run kubectl wait -n "$NS" --for=jsonpath='{.status.conditions[?(@.type=="Reconciling")].reason}'=ImageInUse \
  --timeout=60s vimg/golden-image
run kubectl get -n "$NS" vimg golden-image \
  -o jsonpath='{range .status.conditions[?(@.type=="Reconciling")]}{.reason}: {.message}{"\n"}{end}'
echo "The image is still in the cloud:"
cloud_images
run kubectl wait -n "$NS" --for=condition=Ready --timeout=120s cvol/partner-volume-2
echo "The volume is made and no longer needs the image; the image's own rules apply now: it is"
echo "still shared (and protected), so its deletion holds until the ImageShare goes and the spec"
echo "says protected: false:"
run kubectl wait -n "$NS" --for=condition=Stalled --timeout=60s vimg/golden-image
run kubectl get -n "$NS" vimg golden-image \
  -o jsonpath='{range .status.conditions[?(@.type=="Stalled")]}{.reason}: {.message}{"\n"}{end}'
run kubectl get cloudvol -n "$NS"

step "The operator"
printf 'operator RSS: %s KiB\n' "$(ps -o rss= -p "$(cat "$STATE/operator.pid")" | tr -d ' ')"
run curl -s "http://$OPERATOR_ADDR/metrics" | grep -E '^cloudvol_(objects|reconciles_total)' || true

cat <<MSG

Everything keeps running. Try it:
  export KUBECONFIG=$KUBECONFIG
  kubectl get cloudvol -n $NS
  kubectl describe cvol -n $NS demo-volume
  curl -s $EMU/_admin/volumes
Let the golden image's deletion finish: its share first, then lift the protection:
  kubectl delete -n $NS ishare/golden-image-to-partner
  kubectl patch -n $NS vimg golden-image --type merge -p '{"spec":{"resource":{"protected":false}}}'
Logs: $STATE/operator.log, $STATE/emulator.log
Stop everything with:
  hack/demo.sh stop
MSG

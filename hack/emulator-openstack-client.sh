#!/usr/bin/env bash
# Runs the real python-openstackclient against cloudvol-emulator's Keystone v3
# endpoint: `openstack image list` and `openstack volume list` must succeed
# (password auth, then application-credential auth). Exits non-zero if any
# command fails.
#
#   hack/emulator-openstack-client.sh
#
# The client is installed once into ~/.cache/cloudvol/venv-osc-<version>.
set -euo pipefail

OSC_VERSION="${OSC_VERSION:-10.5.0}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${HOME}/.cache/cloudvol/venv-osc-${OSC_VERSION}"

if [ ! -x "${VENV}/bin/openstack" ]; then
  echo "==> installing python-openstackclient==${OSC_VERSION} into ${VENV}"
  mkdir -p "$(dirname "${VENV}")"
  python3 -m venv "${VENV}"
  "${VENV}/bin/pip" install --quiet --disable-pip-version-check \
    "python-openstackclient==${OSC_VERSION}"
fi
OPENSTACK="${VENV}/bin/openstack"

echo "==> building cloudvol-emulator"
(cd "${ROOT}" && cargo build --quiet -p cloudvol-emulator --bin cloudvol-emulator)
BIN="${CARGO_TARGET_DIR:-${ROOT}/target}/debug/cloudvol-emulator"

WORK="$(mktemp -d)"
EMU_PID=""
cleanup() {
  if [ -n "${EMU_PID}" ]; then kill "${EMU_PID}" 2>/dev/null || true; wait "${EMU_PID}" 2>/dev/null || true; fi
  rm -rf "${WORK}"
}
trap cleanup EXIT

# Transitions of 0 so that the seeded resources are ready at once.
cat > "${WORK}/config.yaml" <<YAML
region: KR1
tenants:
  - id: 6cdebe3eb0094910bc41f1d42ebe4cb7
    name: demo
    users:
      - username: demo
        password: demo-password
        application_credentials: [{id: demo-appcred, secret: demo-appcred-secret}]
  - id: 8989447062e04a818baf9e073fd04fa7
    name: partner
    users: [{username: partner, password: partner-password}]
transitions: {default: 0}
YAML

"${BIN}" --listen 127.0.0.1:0 --config "${WORK}/config.yaml" > "${WORK}/stdout" 2> "${WORK}/stderr" &
EMU_PID=$!
for _ in $(seq 1 200); do
  if [ -s "${WORK}/stdout" ]; then break; fi
  if ! kill -0 "${EMU_PID}" 2>/dev/null; then cat "${WORK}/stderr" >&2; exit 1; fi
  sleep 0.05
done
BASE="$(head -n1 "${WORK}/stdout" | sed -n 's#^listening on \(http://.*\)$#\1#p')"
if [ -z "${BASE}" ]; then echo "emulator did not print its address" >&2; exit 1; fi
echo "==> emulator at ${BASE}"

# Seed a volume and an image made from it, through the NHN APIs.
TENANT=6cdebe3eb0094910bc41f1d42ebe4cb7
TOKEN="$(curl -sf "${BASE}/identity/v2.0/tokens" -H 'Content-Type: application/json' \
  -d "{\"auth\":{\"tenantId\":\"${TENANT}\",\"passwordCredentials\":{\"username\":\"demo\",\"password\":\"demo-password\"}}}" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["access"]["token"]["id"])')"
VOLUME="$(curl -sf "${BASE}/block-storage/v2/${TENANT}/volumes" -H "X-Auth-Token: ${TOKEN}" \
  -H 'Content-Type: application/json' -d '{"volume":{"size":10,"name":"osc-check"}}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["volume"]["id"])')"
curl -sf "${BASE}/block-storage/v2/${TENANT}/volumes/${VOLUME}/action" -H "X-Auth-Token: ${TOKEN}" \
  -H 'Content-Type: application/json' \
  -d '{"os-volume_upload_image":{"image_name":"osc-check-image","disk_format":"qcow2","container_format":"bare"}}' > /dev/null

# Only the variables set here reach the client.
for v in $(env | sed -n 's/^\(OS_[A-Za-z_]*\)=.*/\1/p'); do unset "$v"; done
export OS_AUTH_URL="${BASE}/identity/v3"
export OS_IDENTITY_API_VERSION=3
export OS_REGION_NAME=KR1
export OS_INTERFACE=public

run() {
  echo "\$ openstack $*" >&2
  "${OPENSTACK}" "$@"
}

echo "==> password auth (user demo, project demo, domain Default)"
(
  export OS_USERNAME=demo OS_PASSWORD=demo-password OS_USER_DOMAIN_NAME=Default
  export OS_PROJECT_NAME=demo OS_PROJECT_DOMAIN_NAME=Default
  run image list
  run volume list
  # Beyond the two required commands: a create and an upload-to-image
  # through the real client (transitions are 0, so no waiting).
  run volume create --size 2 osc-created -f value -c id > "${WORK}/created"
  run volume show "$(cat "${WORK}/created")" -f value -c status
  run image create --volume "$(cat "${WORK}/created")" --disk-format qcow2 osc-created-image -f value -c image_id
  run image list
)

echo "==> application credential auth"
(
  export OS_AUTH_TYPE=v3applicationcredential
  export OS_APPLICATION_CREDENTIAL_ID=demo-appcred OS_APPLICATION_CREDENTIAL_SECRET=demo-appcred-secret
  run image list
  run volume list
)

echo "==> requests the client made"
curl -sf "${BASE}/_admin/requests" | python3 -m json.tool
echo "==> OK: python-openstackclient ${OSC_VERSION} works against the emulator"

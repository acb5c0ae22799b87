#!/usr/bin/env bash
# A real, minimal OpenStack on loopback (Keystone, Glance, Cinder from PyPI, RabbitMQ
# from Debian), for differential tests of the emulator and for trying the operator
# against upstream services. See docs/openstack.md.
#
#   hack/openstack.sh deps      installs the Debian packages it needs (rabbitmq-server,
#                               qemu-utils) when missing; prints what it installs
#   hack/openstack.sh venv      builds (or finds) the Python venv; prints its folder
#   hack/openstack.sh start     idempotent; prints `export ...` lines to eval
#   hack/openstack.sh env       prints the export lines of the running services
#   hack/openstack.sh stop      stops everything and removes its state
#   hack/openstack.sh status    exit 0 when every service answers
#   hack/openstack.sh freeze    rewrites hack/openstack/constraints.txt from a fresh venv
#
# The venv is cached outside the clone, keyed by a hash of the pinned requirements
# and the Python version, under ${CLOUDVOL_CACHE:-~/.cache/cloudvol}/openstack-venv-<hash>,
# so only the first run on a machine pays for the install.
#
# Environment:
#   CLOUDVOL_OS_DIR     state folder (configs, sqlite databases, volumes, images, logs);
#                       default ${TMPDIR:-/tmp}/cloudvol-openstack-$UID. Give each
#                       parallel OpenStack its own folder.
#   CLOUDVOL_OS_PYTHON  the Python to build the venv with (default python3.11, else
#                       python3; the pins are tested on 3.11).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/openstack
CACHE=${CLOUDVOL_CACHE:-$HOME/.cache/cloudvol}
STATE=${CLOUDVOL_OS_DIR:-${TMPDIR:-/tmp}/cloudvol-openstack-$(id -u)}
REGION=RegionOne
RABBIT_BIN=/usr/lib/rabbitmq/bin
# The processes, in the order they are stopped.
SERVICES=(cinder-volume cinder-scheduler cinder-api glance keystone rabbitmq)

T0=$SECONDS
log() { echo "openstack: [$((SECONDS - T0))s] $*" >&2; }
die() { log "error: $*"; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "$1 is required but not installed${2:+ ($2)}"; }

python_bin() {
  if [ -n "${CLOUDVOL_OS_PYTHON:-}" ]; then echo "$CLOUDVOL_OS_PYTHON"; return; fi
  command -v python3.11 || command -v python3 || die "python3 is required"
}

# --- Debian packages ----------------------------------------------------------------

missing_debs() {
  local missing=()
  [ -x "$RABBIT_BIN/rabbitmq-server" ] || missing+=(rabbitmq-server)
  command -v qemu-img >/dev/null 2>&1 || missing+=(qemu-utils)
  command -v setsid >/dev/null 2>&1 || missing+=(util-linux)
  echo "${missing[*]}"
}

deps() {
  local missing
  missing=$(missing_debs)
  if [ -z "$missing" ]; then
    log "Debian packages present (rabbitmq-server, qemu-utils)"
    return
  fi
  [ "$(id -u)" = 0 ] || die "missing Debian packages: $missing; install them as root (apt-get install $missing)"
  log "installing Debian packages: $missing"
  apt-get update -qq >&2
  # No service is started on a machine without systemd; where there is one, the
  # system's RabbitMQ node is left alone (ours has its own name, ports and epmd).
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >&2
  log "installed: $missing"
}

# --- the venv -------------------------------------------------------------------------

venv_dir() {
  local py key
  py=$(python_bin)
  key=$( { cat "$HERE/requirements.txt" "$HERE/constraints.txt"; "$py" -c 'import sys; print(sys.version)'; } \
    | sha256sum | cut -c1-16)
  echo "$CACHE/openstack-venv-$key"
}

# Prints the venv folder, building it if needed (once per machine and pin set).
venv() {
  local py dir
  py=$(python_bin)
  "$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' \
    || die "$py is older than 3.10; set CLOUDVOL_OS_PYTHON to a Python 3.11"
  dir=$(venv_dir)
  mkdir -p "$CACHE"
  # One builder at a time per machine; others wait for its result.
  exec 9>"$dir.lock"
  flock 9
  if [ ! -f "$dir/.complete" ]; then
    rm -rf "$dir"
    log "building the OpenStack venv in $dir (once per machine; ~2 min)"
    local start=$SECONDS
    "$py" -m venv "$dir" >&2 || die "cannot create a venv with $py (Debian: apt-get install python3-venv)"
    "$dir/bin/pip" install --disable-pip-version-check -q \
      -c "$HERE/constraints.txt" -r "$HERE/requirements.txt" >&2 \
      || { rm -rf "$dir"; die "pip install failed (see above)"; }
    touch "$dir/.complete"
    log "venv ready in $((SECONDS - start))s"
  fi
  exec 9>&-
  echo "$dir"
}

freeze() {
  local py dir
  py=$(python_bin)
  dir=$(mktemp -d)
  "$py" -m venv "$dir/venv"
  "$dir/venv/bin/pip" install --disable-pip-version-check -q -r "$HERE/requirements.txt" >&2
  {
    echo "# pip freeze of a venv built from requirements.txt on Python 3.11; regenerate with"
    echo "# hack/openstack.sh freeze"
    "$dir/venv/bin/pip" freeze --all | grep -v -E '^(pip|setuptools|wheel)=='
  } >"$HERE/constraints.txt"
  rm -rf "$dir"
  log "wrote $HERE/constraints.txt"
}

# --- running ----------------------------------------------------------------------------

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

alive() { [ -f "$STATE/run/$1.pid" ] && kill -0 "$(cat "$STATE/run/$1.pid")" 2>/dev/null; }

port() { cat "$STATE/run/$1.port"; }

answers() { curl -s -o /dev/null --max-time 3 -w '%{http_code}' "$1" 2>/dev/null | grep -qE '^(200|300)$'; }

ready() {
  local s
  [ -f "$STATE/env" ] || return 1
  for s in "${SERVICES[@]}"; do alive "$s" || return 1; done
  answers "http://127.0.0.1:$(port keystone)/v3" \
    && answers "http://127.0.0.1:$(port glance)/versions" \
    && answers "http://127.0.0.1:$(port cinder)/"
}

# Renders a template of hack/openstack/etc, replacing each @NAME@ by $NAME.
render() {
  local src=$1 dst=$2 args=() name
  for name in STATE VENV REGION KEYSTONE_PORT GLANCE_PORT CINDER_PORT RABBIT_PORT \
    GLANCE_PASSWORD CINDER_PASSWORD; do
    args+=(-e "s|@$name@|${!name}|g")
  done
  sed "${args[@]}" "$src" >"$dst"
}

# Starts a long-running process in its own session (so that stop can end its whole
# process group), logging to $STATE/logs/NAME.log.
spawn() {
  local name=$1; shift
  setsid "$@" >>"$STATE/logs/$name.log" 2>&1 </dev/null 8>&- 9>&- &
  echo $! >"$STATE/run/$name.pid"
}

wait_until() {
  local what=$1 seconds=$2 name=$3; shift 3
  local deadline=$((SECONDS + seconds))
  until "$@"; do
    alive "$name" || die "$name exited while starting; see $STATE/logs/$name.log:
$(tail -n 20 "$STATE/logs/$name.log")"
    [ $SECONDS -lt $deadline ] || die "$what not ready after ${seconds}s; see $STATE/logs/$name.log"
    sleep 0.3
  done
}

# `env` and the variables that make the Debian package's own rabbitmq-server script run
# a node of ours: own name, loopback ports, own epmd, everything under $STATE.
rabbit_env() {
  RABBIT_ENV=(env HOME="$STATE/rabbitmq" \
    RABBITMQ_NODENAME="cloudvol@localhost" \
    RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
    RABBITMQ_NODE_PORT="$RABBIT_PORT" \
    RABBITMQ_DIST_PORT="$RABBIT_DIST_PORT" \
    RABBITMQ_MNESIA_BASE="$STATE/rabbitmq/mnesia" \
    RABBITMQ_LOG_BASE="$STATE/logs/rabbitmq-node" \
    RABBITMQ_CONFIG_FILE="$STATE/rabbitmq/rabbitmq" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$STATE/rabbitmq/enabled_plugins" \
    RABBITMQ_CONF_ENV_FILE="$STATE/rabbitmq/rabbitmq-env.conf" \
    RABBITMQ_PID_FILE="$STATE/rabbitmq/beam.pid" \
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
    RABBITMQ_CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
    ERL_EPMD_ADDRESS=127.0.0.1 \
    ERL_EPMD_PORT="$EPMD_PORT")
}

start_rabbitmq() {
  mkdir -p "$STATE/rabbitmq" "$STATE/logs/rabbitmq-node"
  echo '[].' >"$STATE/rabbitmq/enabled_plugins"
  : >"$STATE/rabbitmq/rabbitmq-env.conf"
  render "$HERE/etc/rabbitmq.conf" "$STATE/rabbitmq/rabbitmq.conf"
  rabbit_env
  spawn rabbitmq "${RABBIT_ENV[@]}" "$RABBIT_BIN/rabbitmq-server"
}

rabbit_ready() {
  "${RABBIT_ENV[@]}" "$RABBIT_BIN/rabbitmqctl" -q -n cloudvol@localhost await_startup --timeout 5 >/dev/null 2>&1
}

# Creates the sqlite database DB with CMD (a db_sync), or copies the empty-schema copy
# kept next to the venv from an earlier run (the schema depends only on the pins;
# this saves ~20 s of each start).
synced_db() {
  local name=$1 db=$2; shift 2
  local template=$VENV/db-templates/$name.db
  if [ -f "$template" ]; then
    cp "$template" "$db"
  else
    "$@" || return 1
    mkdir -p "$VENV/db-templates"
    cp "$db" "$template.$$" && mv "$template.$$" "$template"
  fi
  # Write-ahead logging: readers never block the writer. Cinder's three
  # processes share one database, and with sqlite's default journal a reader
  # upgrading to a writer gets "database is locked" at once, busy timeout or not.
  python3 -c 'import sqlite3, sys; sqlite3.connect(sys.argv[1]).execute("PRAGMA journal_mode=WAL").fetchall()' "$db"
}

setup_keystone() {
  local conf=$STATE/keystone/etc/keystone.conf km=(keystone-manage)
  mkdir -p "$STATE/keystone/etc" "$STATE/keystone/fernet-keys" "$STATE/keystone/credential-keys"
  chmod 700 "$STATE/keystone/fernet-keys" "$STATE/keystone/credential-keys"
  render "$HERE/etc/keystone.conf" "$conf"
  km=("$VENV/bin/keystone-manage" --config-file "$conf")
  {
    synced_db keystone "$STATE/keystone/keystone.db" "${km[@]}" db_sync
    # What fernet_setup and credential_setup write (a staged key 0 and a primary
    # key 1), without two more keystone-manage start-ups.
    python3 -c 'import base64, os, sys
for d in sys.argv[1:]:
    for n in ("0", "1"):
        p = os.path.join(d, n)
        with open(os.open(p, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write(base64.urlsafe_b64encode(os.urandom(32)).decode())' \
      "$STATE/keystone/fernet-keys" "$STATE/keystone/credential-keys"
    "${km[@]}" bootstrap --bootstrap-password "$ADMIN_PASSWORD" \
      --bootstrap-username admin --bootstrap-project-name admin \
      --bootstrap-role-name admin --bootstrap-service-name keystone \
      --bootstrap-region-id "$REGION" \
      --bootstrap-admin-url "http://127.0.0.1:$KEYSTONE_PORT/v3" \
      --bootstrap-internal-url "http://127.0.0.1:$KEYSTONE_PORT/v3" \
      --bootstrap-public-url "http://127.0.0.1:$KEYSTONE_PORT/v3"
  } >>"$STATE/logs/keystone-manage.log" 2>&1 || die "keystone-manage failed; see $STATE/logs/keystone-manage.log:
$(tail -n 20 "$STATE/logs/keystone-manage.log")"
}

setup_glance() {
  local etc=$STATE/glance/etc
  mkdir -p "$etc" "$STATE/glance/images" "$STATE/glance/staging" "$STATE/glance/tasks" "$STATE/glance/locks"
  render "$HERE/etc/glance-api.conf" "$etc/glance-api.conf"
  cp "$VENV/etc/glance/glance-api-paste.ini" "$etc/"
  synced_db glance "$STATE/glance/glance.db" \
    "$VENV/bin/glance-manage" --config-file "$etc/glance-api.conf" db_sync \
    >>"$STATE/logs/glance-manage.log" 2>&1 || die "glance-manage db_sync failed; see $STATE/logs/glance-manage.log:
$(tail -n 20 "$STATE/logs/glance-manage.log")"
}

setup_cinder() {
  local etc=$STATE/cinder/etc
  mkdir -p "$etc" "$STATE/cinder/volumes" "$STATE/cinder/conversion" "$STATE/cinder/locks" "$STATE/cinder/coordination"
  render "$HERE/etc/cinder.conf" "$etc/cinder.conf"
  # Without resource_filters.json every `?name=` list query is a 400.
  cp "$VENV/etc/cinder/api-paste.ini" "$VENV/etc/cinder/resource_filters.json" "$etc/"
  synced_db cinder "$STATE/cinder/cinder.db" \
    "$VENV/bin/cinder-manage" --config-file "$etc/cinder.conf" db sync \
    >>"$STATE/logs/cinder-manage.log" 2>&1 || die "cinder-manage db sync failed; see $STATE/logs/cinder-manage.log:
$(tail -n 20 "$STATE/logs/cinder-manage.log")"
}

gunicorn() {
  local name=$1 port=$2 app=$3; shift 3
  # One worker with a few threads each: ~1 GB for the whole cloud.
  spawn "$name" env PYTHONPATH="$HERE" "$@" "$VENV/bin/gunicorn" \
    --bind "127.0.0.1:$port" --workers 1 --worker-class gthread --threads 4 \
    --timeout 300 --graceful-timeout 5 --name "cloudvol-$name" "$app"
}

write_clouds_yaml() {
  local p
  {
    echo "# Written by hack/openstack.sh for the OpenStack in $STATE."
    echo "clouds:"
    for p in a b; do
      cat <<EOF
  project-$p:
    auth_type: password
    auth:
      auth_url: http://127.0.0.1:$KEYSTONE_PORT/v3
      username: $(jq_out "project_$p.user")
      password: $(jq_out "project_$p.password")
      project_name: $(jq_out "project_$p.name")
      user_domain_name: Default
      project_domain_name: Default
    region_name: $REGION
    interface: public
    identity_api_version: 3
EOF
    done
    cat <<EOF
  admin:
    auth_type: password
    auth:
      auth_url: http://127.0.0.1:$KEYSTONE_PORT/v3
      username: admin
      password: $ADMIN_PASSWORD
      project_name: admin
      user_domain_name: Default
      project_domain_name: Default
    region_name: $REGION
    interface: public
    identity_api_version: 3
EOF
  } >"$STATE/clouds.yaml"
}

jq_out() {
  python3 -c 'import json,sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."): v = v[k]
print(v)' "$STATE/keystone/provisioned.json" "$1"
}

write_env() {
  local p P
  {
    echo "export CLOUDVOL_OS_DIR=$STATE"
    echo "export OS_AUTH_URL=http://127.0.0.1:$KEYSTONE_PORT/v3"
    echo "export OS_REGION_NAME=$REGION"
    echo "export OS_CLIENT_CONFIG_FILE=$STATE/clouds.yaml"
    echo "export CLOUDVOL_OS_REGION=$REGION"
    echo "export CLOUDVOL_OS_CLOUDS_YAML=$STATE/clouds.yaml"
    echo "export CLOUDVOL_OS_KEYSTONE_URL=http://127.0.0.1:$KEYSTONE_PORT"
    echo "export CLOUDVOL_OS_GLANCE_URL=http://127.0.0.1:$GLANCE_PORT"
    echo "export CLOUDVOL_OS_CINDER_URL=http://127.0.0.1:$CINDER_PORT"
    for p in a b; do
      P=$(echo "$p" | tr a-z A-Z)
      echo "export CLOUDVOL_OS_PROJECT_${P}_ID=$(jq_out "project_$p.id")"
      echo "export CLOUDVOL_OS_PROJECT_${P}_NAME=$(jq_out "project_$p.name")"
      echo "export CLOUDVOL_OS_PROJECT_${P}_USER=$(jq_out "project_$p.user")"
      echo "export CLOUDVOL_OS_PROJECT_${P}_USER_ID=$(jq_out "project_$p.user_id")"
      echo "export CLOUDVOL_OS_PROJECT_${P}_PASSWORD=$(jq_out "project_$p.password")"
    done
    echo "export CLOUDVOL_OS_ADMIN_PROJECT_ID=$(jq_out admin_project_id)"
    echo "export CLOUDVOL_OS_ADMIN_USER=admin"
    echo "export CLOUDVOL_OS_ADMIN_PASSWORD=$ADMIN_PASSWORD"
    # A service user standing in for Nova (its token detaches in-use volumes).
    echo "export CLOUDVOL_OS_SERVICE_PROJECT=service"
    echo "export CLOUDVOL_OS_SERVICE_USER=compute"
    echo "export CLOUDVOL_OS_SERVICE_PASSWORD=$COMPUTE_PASSWORD"
    echo "export CLOUDVOL_OS_VERSIONS='keystone $(pkg_version keystone), glance $(pkg_version glance), cinder $(pkg_version cinder)'"
  } >"$STATE/env"
}

pkg_version() { sed -n "s/^$1==//p" "$HERE/requirements.txt"; }

start() {
  need curl; need python3; need flock; need sha256sum
  local missing
  missing=$(missing_debs)
  [ -z "$missing" ] || die "missing Debian packages: $missing (run: hack/openstack.sh deps)"
  mkdir -p "$STATE"
  # Serialises concurrent starts; the servers must not inherit the lock (8>&- in spawn).
  exec 8>"$STATE/.lock"
  flock 8
  if ready; then
    cat "$STATE/env"
    return
  fi
  stop_processes
  find "$STATE" -mindepth 1 -maxdepth 1 ! -name .lock -exec rm -rf {} +
  local t0=$SECONDS
  VENV=$(venv)
  local t1=$SECONDS
  mkdir -p "$STATE/run" "$STATE/logs"

  KEYSTONE_PORT=$(free_port); GLANCE_PORT=$(free_port); CINDER_PORT=$(free_port)
  RABBIT_PORT=$(free_port); RABBIT_DIST_PORT=$(free_port); EPMD_PORT=$(free_port)
  for p in KEYSTONE_PORT GLANCE_PORT CINDER_PORT RABBIT_PORT RABBIT_DIST_PORT EPMD_PORT; do
    echo "${!p}" >"$STATE/run/$(echo "${p%_PORT}" | tr A-Z a-z).port"
  done
  secret() { python3 -c 'import secrets; print(secrets.token_hex(12))'; }
  ADMIN_PASSWORD=$(secret); GLANCE_PASSWORD=$(secret); CINDER_PASSWORD=$(secret)
  export ADMIN_PASSWORD GLANCE_PASSWORD CINDER_PASSWORD
  export PROJECT_A_PASSWORD=$(secret) PROJECT_B_PASSWORD=$(secret) COMPUTE_PASSWORD=$(secret)
  export KEYSTONE_URL=http://127.0.0.1:$KEYSTONE_PORT GLANCE_URL=http://127.0.0.1:$GLANCE_PORT
  export CINDER_URL=http://127.0.0.1:$CINDER_PORT REGION

  start_rabbitmq
  # The three databases are independent: build them side by side.
  setup_keystone & local k=$!
  setup_glance & local g=$!
  setup_cinder & local c=$!
  wait $k || exit 1
  log "keystone database ready"
  gunicorn keystone "$KEYSTONE_PORT" wsgi_keystone:application OS_KEYSTONE_CONFIG_DIR="$STATE/keystone/etc"
  wait $g || exit 1
  wait $c || exit 1
  log "glance and cinder databases ready"
  gunicorn glance "$GLANCE_PORT" wsgi_glance:application OS_GLANCE_CONFIG_DIR="$STATE/glance/etc"
  wait_until "RabbitMQ" 120 rabbitmq rabbit_ready
  log "rabbitmq ready"
  local conf=$STATE/cinder/etc/cinder.conf
  gunicorn cinder-api "$CINDER_PORT" wsgi_cinder:application CLOUDVOL_CINDER_CONF="$conf"
  spawn cinder-volume env PYTHONPATH="$HERE" "$VENV/bin/python" "$HERE/run_cinder.py" volume --config-file "$conf"

  # The scheduler learns a backend's pools when the volume service reports, which
  # it does once at start and then every 60 s, or when a starting scheduler asks.
  # Start the scheduler once the volume service listens, so that it asks and gets
  # an answer at once; in the other order the first create can wait a minute.
  wait_until "cinder-volume" 180 cinder-volume \
    grep -q "Driver post RPC initialization completed" "$STATE/logs/cinder-volume.log"
  spawn cinder-scheduler env PYTHONPATH="$HERE" "$VENV/bin/python" "$HERE/run_cinder.py" scheduler --config-file "$conf"
  log "cinder-volume listens"
  wait_until "Keystone" 120 keystone answers "$KEYSTONE_URL/v3"
  log "keystone answers"
  "$VENV/bin/python" "$HERE/provision.py" keystone "$STATE/keystone/provisioned.json" \
    || die "provisioning Keystone failed (see above)"
  log "keystone provisioned"
  wait_until "Glance" 120 glance answers "$GLANCE_URL/versions"
  wait_until "the Cinder API" 120 cinder-api answers "$CINDER_URL/"
  log "glance and the cinder API answer"
  for s in cinder-scheduler cinder-volume; do
    alive "$s" || die "$s exited; see $STATE/logs/$s.log: $(tail -n 20 "$STATE/logs/$s.log")"
  done
  "$VENV/bin/python" "$HERE/provision.py" cinder-ready \
    || die "Cinder did not become ready; see $STATE/logs/cinder-*.log"

  write_clouds_yaml
  write_env
  log "ready in $((SECONDS - t0))s (venv $((t1 - t0))s): Keystone $KEYSTONE_URL/v3, Glance $GLANCE_URL, Cinder $CINDER_URL/v3 (state in $STATE)"
  cat "$STATE/env"
}

# Ends each service's whole process group (gunicorn workers, cinder-volume's
# backend child, privsep helpers, the Erlang VM's helpers), then RabbitMQ's epmd.
stop_processes() {
  local s pid pids=()
  # TERM every group at once (each takes 1-3 s to finish), then KILL what is left.
  for s in "${SERVICES[@]}"; do
    [ -f "$STATE/run/$s.pid" ] || continue
    pid=$(cat "$STATE/run/$s.pid")
    kill -TERM -- "-$pid" 2>/dev/null && pids+=("$pid")
    rm -f "$STATE/run/$s.pid"
  done
  for _ in $(seq 1 100); do
    local left=0
    for pid in "${pids[@]}"; do kill -0 -- "-$pid" 2>/dev/null && left=1; done
    [ $left = 1 ] || break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
  # The epmd that our node started on its own port (never the system's).
  if [ -f "$STATE/run/epmd.port" ]; then
    ERL_EPMD_PORT=$(cat "$STATE/run/epmd.port") epmd -kill >/dev/null 2>&1 || true
  fi
}

stop() {
  [ -d "$STATE" ] || return 0
  exec 8>"$STATE/.lock"
  flock 8
  stop_processes
  rm -rf "$STATE"
  log "stopped"
}

# Resident memory of a service's process group, in MiB.
rss_mib() { ps -o rss= -g "$1" 2>/dev/null | awk '{s += $1} END {printf "%d", s / 1024}'; }

status() {
  local s pid ok=0 total=0 mib
  for s in "${SERVICES[@]}"; do
    if alive "$s"; then
      pid=$(cat "$STATE/run/$s.pid")
      mib=$(rss_mib "$pid")
      total=$((total + mib))
      log "$s: running (pid $pid, ${mib} MiB resident)"
    else
      log "$s: not running"
      ok=1
    fi
  done
  log "total: ${total} MiB resident"
  [ $ok = 0 ] && ready
}

case "${1:-}" in
  deps) deps ;;
  venv) venv ;;
  start) start ;;
  env) ready && cat "$STATE/env" ;;
  stop) stop ;;
  status) status ;;
  freeze) freeze ;;
  *) echo "usage: $0 deps|venv|start|env|stop|status|freeze" >&2; exit 2 ;;
esac

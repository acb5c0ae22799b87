# The few verbs people type. Everything else lives in hack/.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: demo test lint chaos crds bench control-plane-stop openstack openstack-stop

## Run the demo: a control plane, the emulator, the operator, and the examples.
demo:
	hack/demo.sh

## Run every check CI runs: formatting, clippy, and all tests against a real kube-apiserver.
## The differential tests need rabbitmq-server and qemu-utils (installed here when missing,
## as root); everything else the tests need they build or install themselves, cached.
test: lint
	hack/openstack.sh deps
	$(CARGO) test --workspace --all-targets --no-fail-fast

## Both polling modes side by side on N Volumes (default 1000), release build, real control plane
## and emulator; prints figures, asserts nothing (docs/performance.md). Not part of `make test`.
bench:
	hack/bench.sh

## The chaos soak: random cloud faults and SIGKILLs of the real operator binary, then counts of
## duplicates, leaks, stuck, not-ready objects and panics (docs/crash-safety.md). One cycle by
## default; `make chaos CHAOS_SEED=7 CHAOS_DURATION=20m`, and `hack/chaos.sh --help` for the rest.
chaos:
	CARGO=$(CARGO) hack/chaos.sh

## Formatting and clippy, warnings as errors.
lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## Regenerate crds/, the chart's CRDs and deploy/ from src/api and the chart.
crds:
	$(CARGO) run -q -- crds --out-dir crds
	$(CARGO) run -q -- crds --out-dir charts/cloudvol/crds
	hack/helm.sh render-deploy

## Stop the control plane that tests and the demo leave running.
control-plane-stop:
	hack/control-plane.sh stop

## Start the real OpenStack (Keystone, Glance, Cinder) the differential tests use; eval its output.
openstack:
	hack/openstack.sh start

## Stop it and remove its state.
openstack-stop:
	hack/openstack.sh stop

# slipway: `make demo` runs the local environment and the examples; `make test` runs every check.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CLUSTER := $(PY) -m slipway_dev.localcluster
DEMO_DIR := .demo
# pytest's exit code 5 means it collected nothing: the suite is broken, not green. make would report any failing
# recipe as its own exit code 2, so the cause is said here, where pytest runs.
PYTEST = $(VENV)/bin/pytest $(1) || { rc=$$?; if [ $$rc = 5 ]; then echo "pytest collected no tests in $(1)" >&2; fi; exit $$rc; }
# pip's cache stays in the home directory (its default), shared by CI runs and later work.

.PHONY: help deps system-deps controlplane serving kserve-python knative knative-sources kueue kueue-sources argo-rollouts argo-rollouts-sources helm generate check-generated lint unit integration test \
        cluster-up cluster-down demo demo-down clean

help:
	@echo "make demo       the whole loop on the local cluster (train, canary, rollback, drift, retrain) + report"
	@echo "make demo-down  stop everything 'make demo' started"
	@echo "make test       lint, generated-file check, unit and integration tests"
	@echo "make generate   regenerate crds/ from the pydantic models"

# One environment holds the operator, its test tools and the runtimes the local executor runs.
$(VENV)/.installed: pyproject.toml devenv/pyproject.toml runtimes/trainer/pyproject.toml runtimes/predictor/pyproject.toml \
                   runtimes/drift/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,report]' -e devenv -e runtimes/trainer -e 'runtimes/predictor[test,dev]' \
	  -e 'runtimes/drift[test,dev]'
	touch $@

deps: $(VENV)/.installed

system-deps:
	bash hack/install-system-deps.sh

controlplane:
	bash hack/build-controlplane.sh

# KServe's manager and agent and Traefik, from their Go modules (hack/kserve, hack/traefik).
serving:
	bash hack/build-serving.sh

# KServe's Python runtimes (storage initializer, sklearn server) in their own environment.
kserve-python: serving
	bash hack/build-kserve-python.sh

helm:
	bash hack/build-helm.sh

# Knative Serving's controller, webhook, autoscaler, activator and queue-proxy (hack/knative).
knative:
	bash hack/build-knative.sh

# Knative Serving's module sources (their config/ YAML, read by devenv/slipway_dev/localcluster/knative.py and its tests).
knative-sources:
	cd hack/knative && go mod download knative.dev/serving knative.dev/networking knative.dev/caching

# Kueue's manager (hack/kueue).
kueue:
	bash hack/build-kueue.sh

# Argo Rollouts' controller (hack/argo-rollouts), for bench/compare_argo.py only: neither `test` nor `demo`
# builds it (`python -m slipway_dev.localcluster up --argo-rollouts` runs its analysis controller).
argo-rollouts:
	bash hack/build-argo-rollouts.sh

# Argo Rollouts' module source (its manifests/: CRDs and RBAC, read by devenv/slipway_dev/localcluster/argo.py and its unit
# tests); the controller itself is built only for the bench (`make argo-rollouts`).
argo-rollouts-sources:
	cd hack/argo-rollouts && go mod download github.com/argoproj/argo-rollouts

# Kueue's module source (its config/ YAML, read by devenv/slipway_dev/localcluster/kueue.py and its tests).
kueue-sources:
	cd hack/kueue && go mod download sigs.k8s.io/kueue

generate: deps helm
	$(PY) -m slipway.api.crdgen crds
	$(PY) -m slipway_dev.chart_crds  # the chart's crds/ and deploy/ follow crds/

check-generated: deps helm
	$(PY) -m slipway.api.crdgen --check crds
	$(PY) -m slipway_dev.chart_crds --check
	$(PY) -m slipway_dev.argocd_cm --check

lint: deps check-generated
	$(VENV)/bin/ruff check operator runtimes tests devenv bench
	$(VENV)/bin/ruff format --check operator runtimes tests devenv bench
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy --strict runtimes/trainer/slipway_trainer
	$(VENV)/bin/mypy --strict runtimes/predictor/slipway_predictor
	$(VENV)/bin/mypy --strict runtimes/drift/slipway_drift
	$(VENV)/bin/shellcheck hack/*.sh

unit: deps helm knative-sources kueue-sources argo-rollouts-sources
	$(call PYTEST,tests/unit)

integration: deps system-deps controlplane serving kserve-python knative kueue helm
	SLIPWAY_REQUIRE_CLUSTER=1 $(call PYTEST,tests/integration tests/e2e)

test: lint system-deps controlplane serving kserve-python knative kueue helm knative-sources kueue-sources argo-rollouts-sources
	SLIPWAY_REQUIRE_CLUSTER=1 $(call PYTEST,tests)

cluster-up: deps system-deps controlplane serving kserve-python knative kueue
	$(CLUSTER) up --serving --knative --kueue --prometheus

cluster-down:
	@if [ -x $(PY) ]; then $(CLUSTER) down; fi

# make demo MODE=Serverless plays the loop on Knative Serving (default: Standard, KServe's Gateway API mode).
demo: cluster-up
	$(PY) -m slipway_dev.demo $(if $(MODE),--mode $(MODE))

demo-down:
	@for f in $(DEMO_DIR)/*.pid; do [ -f "$$f" ] || continue; \
	  pid=$$(cat $$f); kill $$pid 2>/dev/null || true; \
	  for _ in $$(seq 40); do kill -0 $$pid 2>/dev/null || break; sleep 0.5; done; \
	  rm -f $$f; echo "$$(basename $$f .pid) (pid $$pid) stopped"; done
	@$(MAKE) --no-print-directory cluster-down

clean: demo-down
	rm -rf $(VENV) .cluster $(DEMO_DIR)

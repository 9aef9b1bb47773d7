# videogen — every command a developer needs. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONTRACT_VENV := .venv-contract
CONTRACT_STAMP := $(CONTRACT_VENV)/.installed
SCAN_VENV := .venv-scan
SCAN_STAMP := $(SCAN_VENV)/.installed
NODE_STAMP := clients/ts/node_modules/.installed
export PYTHONPATH := layers/videogen:.
export AWS_DEFAULT_REGION ?= us-east-1

.PHONY: help run test test-fast mutate lint browser-check chaos chaos-small contract-check fuzz scan iam-report bench build validate deploy-dev deploy-prod clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): requirements-dev.txt layers/videogen/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

$(CONTRACT_STAMP): requirements-contract.txt
	$(PYTHON) -m venv $(CONTRACT_VENV)
	$(CONTRACT_VENV)/bin/pip install --quiet --upgrade pip
	$(CONTRACT_VENV)/bin/pip install --quiet -r requirements-contract.txt
	touch $(CONTRACT_STAMP)

$(SCAN_STAMP): requirements-scan.txt
	$(PYTHON) -m venv $(SCAN_VENV)
	$(SCAN_VENV)/bin/pip install --quiet --upgrade pip
	$(SCAN_VENV)/bin/pip install --quiet -r requirements-scan.txt
	touch $(SCAN_STAMP)

$(NODE_STAMP): clients/ts/package.json clients/ts/package-lock.json
	cd clients/ts && npm ci --no-audit --no-fund
	touch $(NODE_STAMP)

run: $(STAMP) ## serve the whole system locally (API :3000, fal simulator :3001)
	$(BIN)/python -m devstack

test: $(STAMP) ## every suite, one pytest run each: unit, integration (moto + real state machine), e2e over HTTP, chaos; a suite collecting no test fails (PYTEST_ARGS: passed to each)
	$(BIN)/python -m devstack.suites $(if $(PYTEST_ARGS),-- $(PYTEST_ARGS))

test-fast: $(STAMP) ## unit tests only
	$(BIN)/python -m devstack.suites unit $(if $(PYTEST_ARGS),-- $(PYTEST_ARGS))

mutate: $(STAMP) ## mutation score (mutmut) of the domain and the services against the unit tests, bounded (MUTATE_BUDGET_S=1200); fails below 90 %
	$(BIN)/python -m devstack.mutation --budget-s $${MUTATE_BUDGET_S:-1200} $(MUTANTS)

lint: $(STAMP) ## ruff, mypy (the package, and the test fakes against its ports), cfn-lint, sam validate --lint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check layers functions devstack tests/fakes
	$(BIN)/mypy
	MYPYPATH=. $(BIN)/mypy -p tests.fakes
	$(BIN)/cfn-lint template.yaml
	$(BIN)/sam validate --lint

scan: $(STAMP) $(SCAN_STAMP) ## checkov + cfn-lint on template.yaml; fails on any failed check (suppressions live beside their resource, with the reason)
	$(SCAN_VENV)/bin/checkov --file template.yaml --framework cloudformation --skip-download --compact --quiet --output cli
	@# checkov drops resources whose Condition is false at the defaults: scan the media CDN (MediaCdn=on) too
	@mkdir -p .scan-cdn && sed '/^  MediaCdn:$$/,/Default:/s/Default: "off"/Default: "on"/' template.yaml > .scan-cdn/template.yaml
	@grep -q 'Default: "on"' .scan-cdn/template.yaml
	$(SCAN_VENV)/bin/checkov --file .scan-cdn/template.yaml --framework cloudformation --skip-download --compact --quiet --output cli
	$(BIN)/cfn-lint template.yaml
	@echo "cfn-lint: 0 errors, 0 warnings"

iam-report: $(STAMP) ## the integration + e2e tests, then every AWS call per function against its role and each unused grant (devstack/iam.py)
	IAM_REPORT=1 $(BIN)/pytest -q tests/integration tests/e2e

browser-check: $(STAMP) ## CORS from outside: headless Chromium calls the local stack from allowed and refused origins (apt: chromium chromium-driver)
	$(BIN)/pytest -q -m browser --timeout 120 tests/browser

chaos: $(STAMP) ## chaos run against the local stack (300 jobs, every fault on); exits non-zero on a broken invariant
	$(BIN)/python -m devstack.chaos --jobs $${JOBS:-300}

chaos-small: $(STAMP) ## the seeded 40-job chaos run CI uses
	$(BIN)/python -m devstack.chaos --jobs 40 --seed 7

contract-check: $(STAMP) $(CONTRACT_STAMP) $(NODE_STAMP) ## generated TS + Python clients drive the app flow, Redocly lint, a short schemathesis run (CI)
	$(BIN)/python -m devstack.contract_check --fuzz-examples $${FUZZ_EXAMPLES:-10} --fuzz-time-s $${FUZZ_TIME_S:-60}

fuzz: $(STAMP) $(CONTRACT_STAMP) ## schemathesis, all checks + stateful, bounded (FUZZ_EXAMPLES=100, FUZZ_TIME_S=600), then the credits audit
	$(BIN)/python -m devstack.contract_check --no-clients --fuzz-examples $${FUZZ_EXAMPLES:-100} --fuzz-time-s $${FUZZ_TIME_S:-600}

bench: $(STAMP) ## benchmarks, printed as ratios against baselines measured in the same run
	$(BIN)/python -m bench

build: $(STAMP) ## sam build (needs python3.13 on PATH; pyenv provides it), then every .so of the built layers checked aarch64 with `file`, and their sizes
	PATH="$$(dirname $$(PYENV_VERSION=3.13.0 pyenv which python3.13 2>/dev/null || command -v python3.13)):$$PATH" $(BIN)/sam build
	$(BIN)/python -m devstack.layer_check .aws-sam/build

deploy-dev: build ## deploy the dev stack (AWS credentials required)
	$(BIN)/sam deploy --config-env dev

deploy-prod: build ## deploy the prod stack (asks to confirm the change set)
	$(BIN)/sam deploy --config-env prod

clean: ## remove build output and caches (keeps the venv)
	rm -rf .aws-sam .local .mutmut .mypy_cache .ruff_cache clients/ts/dist clients/ts/src/generated clients/python/generated

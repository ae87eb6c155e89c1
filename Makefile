# Everything a newcomer or CI needs, from a fresh machine with python3 (>= 3.11).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# A second environment for the kurrentdbclient conformance checks: kurrentdbclient needs
# grpcio >= 1.80 while esdbclient pins 1.71, so they cannot share one.
KVENV  := .venv-kurrent
# checkov pins boto3 and ships its own HCL parser that clobbers python-hcl2: its own venv.
CVENV  := .venv-checkov
# pip-audit, pinned, in its own environment so it never changes the tested set.
AVENV  := .venv-audit
# The clouds' own runtime code that loads the packaged zips (tests/runtimes): the Lambda runtime
# interface client, the Azure Functions Python worker and AWS SAM's template transform, each in
# its own environment (their pins differ from the relay's; the zip brings the function's own).
LVENV  := .venv-lambda
WVENV  := .venv-azure-worker
SVENV  := .venv-sam
# The Azure CLI and the AWS SAM CLI, each in its own environment, for the check that every az
# and sam command in docs/deploy-*.md is one the CLI has (tests/infra/test_deploy_commands.py).
AZVENV := .venv-azcli
SCVENV := .venv-samcli

SUDO   := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: browser-deps setup kurrent-env checkov-env runtimes-env docs-cli-env audit-env audit services-deps demo test lint format clean bench soak

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -c constraints.txt -e '.[dev,aws,gcp,azure]'
	touch $@

# Azurite (Azure Table + Queue emulator) for the Azure store and handler tests; 3.35 is the
# last release that runs on Node 20.
node_modules/.bin/azurite-table: package.json
	npm install --no-audit --no-fund --silent
	touch $@

checkov-env: $(CVENV)/.installed

$(CVENV)/.installed: tests/infra/checkov-requirements.txt
	$(PYTHON) -m venv $(CVENV)
	$(CVENV)/bin/python -m pip install --quiet --disable-pip-version-check uv
	$(CVENV)/bin/uv pip install --quiet --python $(CVENV)/bin/python -r tests/infra/checkov-requirements.txt
	touch $@

runtimes-env: $(LVENV)/.installed $(WVENV)/.installed $(SVENV)/.installed

$(LVENV)/.installed: tests/runtimes/lambda-requirements.txt
	$(PYTHON) -m venv $(LVENV)
	$(LVENV)/bin/python -m pip install --quiet --disable-pip-version-check uv
	$(LVENV)/bin/uv pip install --quiet --python $(LVENV)/bin/python -r tests/runtimes/lambda-requirements.txt
	touch $@

# The worker library declares Python >= 3.13; its code runs on the 3.11 the zips are built for.
$(WVENV)/.installed: tests/runtimes/azure-worker-requirements.txt
	$(PYTHON) -m venv $(WVENV)
	$(WVENV)/bin/python -m pip install --quiet --disable-pip-version-check uv
	$(WVENV)/bin/uv pip install --quiet --python $(WVENV)/bin/python --python-version 3.13 -r tests/runtimes/azure-worker-requirements.txt
	touch $@

$(SVENV)/.installed: tests/runtimes/sam-requirements.txt
	$(PYTHON) -m venv $(SVENV)
	$(SVENV)/bin/python -m pip install --quiet --disable-pip-version-check uv
	$(SVENV)/bin/uv pip install --quiet --python $(SVENV)/bin/python -r tests/runtimes/sam-requirements.txt
	touch $@

docs-cli-env: $(AZVENV)/.installed $(SCVENV)/.installed

$(AZVENV)/.installed: tests/infra/azure-cli-requirements.txt
	$(PYTHON) -m venv $(AZVENV)
	$(AZVENV)/bin/python -m pip install --quiet --disable-pip-version-check uv
	$(AZVENV)/bin/uv pip install --quiet --python $(AZVENV)/bin/python -r tests/infra/azure-cli-requirements.txt
	touch $@

$(SCVENV)/.installed: tests/infra/sam-cli-requirements.txt
	$(PYTHON) -m venv $(SCVENV)
	$(SCVENV)/bin/python -m pip install --quiet --disable-pip-version-check uv
	$(SCVENV)/bin/uv pip install --quiet --python $(SCVENV)/bin/python -r tests/infra/sam-cli-requirements.txt
	touch $@

audit-env: $(AVENV)/.installed

$(AVENV)/.installed: tests/security/audit-requirements.txt
	$(PYTHON) -m venv $(AVENV)
	$(AVENV)/bin/python -m pip install --quiet --disable-pip-version-check uv
	$(AVENV)/bin/uv pip install --quiet --python $(AVENV)/bin/python -r tests/security/audit-requirements.txt
	touch $@

# Known vulnerabilities in .venv and in each cloud package fail unless accepted, with a reason
# and an expiry, in .pip-audit-ignore.toml (docs/reliability.md, "Security").
audit: setup audit-env
	$(BIN)/python -m tests.security.dependency_audit

kurrent-env: $(KVENV)/.installed

$(KVENV)/.installed: tests/emulator/kurrent-requirements.txt
	$(PYTHON) -m venv $(KVENV)
	$(KVENV)/bin/python -m pip install --quiet --disable-pip-version-check uv
	$(KVENV)/bin/uv pip install --quiet --python $(KVENV)/bin/python -r tests/emulator/kurrent-requirements.txt
	touch $@

demo: setup
	$(BIN)/esdb-relay demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

services-deps: node_modules/.bin/azurite-table

# Chromium, Debian's package, for the dashboard's browser test (tests/cli/test_dashboard_browser.py);
# Playwright's browser download does not work offline.
browser-deps:
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; }

test: setup kurrent-env checkov-env runtimes-env docs-cli-env services-deps browser-deps lint audit
	$(BIN)/python -m pytest

# The long reliability runs: the tests marked `soak` (Firestore restart, network partition,
# short partitioned soak), then the kill soaks (200 SIGKILLs each, seeded, bounded, about 10
# minutes each on 2 cores) on data migrated before (A -> B -> C): ordered with and without
# multi-stream appends, then 8 partitioned writers, then ordered into a 26.1 target (AppendRecords),
# then a job split into 4 shards run as 4 processes, each killed on its own.
soak: setup
	$(BIN)/python -m pytest -m soak tests/reliability
	$(BIN)/python -m tests.reliability.soak --kills 200 --seed 1 --chain
	$(BIN)/python -m tests.reliability.soak --kills 200 --seed 1 --chain --no-multi-append
	$(BIN)/python -m tests.reliability.soak --kills 200 --seed 1 --chain --mode partitioned --partitions 8
	$(BIN)/python -m tests.reliability.soak --kills 200 --seed 7 --chain --target-version 26.1
	$(BIN)/python -m tests.reliability.soak --kills 200 --seed 3 --shards 4

# All benchmarks (about 40 minutes on 2 cores); the replication run rewrites its section of
# docs/benchmarks.md and docs/cost-model.md. `make bench BENCH_ARGS=--full` for 100k-1M events
# per workload. The RSS run copies 100k and 1M events in every mode (about 20 minutes):
# `RSS_ARGS="--sizes 40000,100000"` for a quick one.
bench: setup
	$(BIN)/python -m bench.emulator_bench
	$(BIN)/python -m bench.verify_bench
	$(BIN)/python -m bench.multi_append_bench
	$(BIN)/python -m bench.replication_bench --write-doc docs/benchmarks.md --cost-doc docs/cost-model.md $(BENCH_ARGS)
	$(BIN)/python -m bench.shards_bench --events 120000 --streams 6000 --target-version 26.1 --sequential
	$(BIN)/python -m bench.rss_bench $(RSS_ARGS)

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) $(KVENV) $(CVENV) $(AVENV) $(LVENV) $(WVENV) $(SVENV) $(AZVENV) $(SCVENV) node_modules .pytest_cache .ruff_cache

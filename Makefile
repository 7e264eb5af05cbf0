# The two commands: `make up` starts the whole system (on PostgreSQL and RabbitMQ, or, when neither
# answers, embedded in one process), `make test` runs every check and test; `make test-containers`
# runs compose.yaml on a Docker engine.
# Each installs what it needs: uv from the package index, then the workspace from uv.lock, and the
# test commands Debian's packages they use (scripts/system-packages.sh).

PYTHON ?= python3
UV := $(PYTHON) -m uv

.PHONY: install up test test-containers system-packages lint typecheck architecture pytest pytest-rabbitmq4 demo clean

install:
	@$(PYTHON) -m uv --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	@$(UV) sync --frozen --quiet

up: install
	$(UV) run deliveryhub up

demo: install
	$(UV) run deliveryhub demo

lint: install
	$(UV) run ruff check .
	$(UV) run ruff format --check .

typecheck: install
	$(UV) run mypy

architecture: install
	$(UV) run lint-imports

# The machine's own RabbitMQ runs neither the project's broker configuration nor the management
# API: the tests that need them run in the RabbitMQ 4 pass below.
# Three workers (pytest-xdist): the tests mostly wait on servers and processes. Each end-to-end
# system's tests stay on one worker (tests/conftest.py); what measures latency runs alone afterwards.
pytest: install
	@bash scripts/system-packages.sh test
	$(UV) run pytest -m "not configured_broker and not alone and not containers" -n 3 --dist loadgroup
	$(UV) run pytest -m "alone and not configured_broker and not containers"

# What talks to the broker, once more on RabbitMQ 4: scripts/rabbitmq4.sh starts Debian 13's 4.0
# beside the machine's server for the run (or uses the one RABBITMQ4_URL names).
RABBITMQ4_TESTS := tests/integration/kit tests/integration/delivery/test_dead_letters.py tests/faults \
	tests/deploy/test_processes.py::test_the_services_connect_as_the_users_the_access_job_made

pytest-rabbitmq4: install
	@bash scripts/system-packages.sh test
	bash scripts/rabbitmq4.sh run $(UV) run pytest $(RABBITMQ4_TESTS)

# One after another: the two passes both start the compose stack as processes, on its fixed ports.
test: system-packages lint typecheck architecture pytest pytest-rabbitmq4

system-packages:
	@bash scripts/system-packages.sh test

# compose.yaml and the Dockerfile on a real Docker engine (deploy/testing/stand-ins.sh starts one
# when none answers, and makes the third-party images from Debian's packages where no registry is
# reached): up, the story through the gateway, replicas, restarts, a stop and a start.
test-containers: install
	@bash scripts/system-packages.sh containers
	$(UV) run pytest -m containers tests/containers -p no:randomly -p no:xdist -s --timeout 1800

clean:
	rm -rf .mypy_cache .ruff_cache .pytest_cache .import_linter_cache

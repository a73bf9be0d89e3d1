# Watchpost: `make run` starts it on a fresh machine, `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

# The test suite runs against real PostgreSQL and Redis (see README.md).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/watchpost
TEST_REDIS_URL ?= redis://127.0.0.1:6379/14
TEST_BROKER_URL ?= redis://127.0.0.1:6379/15

.PHONY: run test lint format bench bench-pings bench-status bench-http clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

run: $(VENV)/.installed
	$(BIN)/python manage.py prepare
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho --no-colour --procfile Procfile --app-root . start

test: $(VENV)/.installed
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) \
	CELERY_BROKER_URL=$(TEST_BROKER_URL) \
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The fleet benchmark: the real stack probing N monitors on loopback, then the
# heartbeat ping benchmark (bench/README.md).
# make bench BENCH_ARGS="--monitors 2000 --window 60" PING_ARGS="--duration 10"
bench: $(VENV)/.installed
	$(BIN)/python bench/fleet.py $(BENCH_ARGS)
	$(BIN)/python bench/pings.py $(PING_ARGS)

# Heartbeat ping throughput under gunicorn, driven by wrk (bench/README.md).
# make bench-pings BENCH_ARGS="--web-concurrency 2 --web-threads 4 --duration 30"
bench-pings: $(VENV)/.installed
	$(BIN)/python bench/pings.py $(BENCH_ARGS)

# The public status page (50 components) under gunicorn, from its cache and without (bench/README.md).
# make bench-status BENCH_ARGS="--duration 10 --connections 32"
bench-status: $(VENV)/.installed
	$(BIN)/python bench/status_page.py $(BENCH_ARGS)

# What one HTTP request costs a probe worker with each client: aiohttp, httpx, lean (bench/README.md).
# make bench-http BENCH_ARGS="--concurrency 50 --rounds 3"
bench-http: $(VENV)/.installed
	$(BIN)/python bench/http_clients.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var staticfiles

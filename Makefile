# The two commands: `make run` (set up + serve on embedded defaults) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test test-compose install lint format migrate clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall only when a requirements file changed.
$(STAMP): $(BIN)/python requirements/base.txt requirements/local.txt requirements/production.txt
	$(BIN)/python -m pip install --quiet -r requirements/local.txt
	touch $(STAMP)

install: $(STAMP)

migrate: install
	$(BIN)/python manage.py migrate --noinput

run: migrate
	@echo "Stagehand on http://$(HOST):$(PORT)/  (admin: http://$(HOST):$(PORT)/admin/, create a login with: $(BIN)/python manage.py createsuperuser)"
	$(BIN)/python -m uvicorn config.asgi:application --host $(HOST) --port $(PORT) --lifespan off

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The compose test: production.yml and local.yml built and run on a real Docker engine
# (docs/deploy.md). Builds stand-in base images first where no registry is reachable.
test-compose: install
	compose/test/build-standins
	$(BIN)/python -m pytest -c e2e/pytest.ini e2e $(PYTEST_ARGS)

# ruff, then the direction of dependencies between apps (pyproject's [tool.importlinter]).
lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/lint-imports --no-cache

format: install
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) var

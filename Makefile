# Two entry points, each doing all the set-up on a fresh machine:
#   make app    create .venv, install, start the studio on sample_data/ (http://localhost:8501)
#   make test   create .venv, install (and Chromium for the browser test), run the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: app test venv chromium

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

# The browser test drives Debian's Chromium (never `playwright install`); installing it needs root, as in CI.
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
		else echo "Chromium is missing and this is not root: the browser test will be skipped (sudo apt-get install chromium)"; fi; \
	fi

app: venv
	$(BIN)/streamlit run app.py

test: venv chromium
	$(BIN)/python -m pytest -q

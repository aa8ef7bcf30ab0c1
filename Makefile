# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SHARED_DATA := $(abspath ../shared/data)
export INDUS_DATA ?= $(if $(wildcard $(SHARED_DATA)/README.md),$(SHARED_DATA),)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo test test-all test-floor lint format clean browser

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned to the CPU wheel, so nothing later pulls CUDA packages
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e '.[all,dev]'
	touch $@

install: $(BIN)/.installed

demo: install
ifneq ($(INDUS_DATA),)
	$(BIN)/indus data list
	$(BIN)/indus run configs/pipeline/demo.yaml --out runs/demo
else
	@echo "no data root (../shared/data not found; set INDUS_DATA): the observational-scaling report only"
	$(BIN)/indus scaling report out/scaling --overwrite
endif

test: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

# the studio's browser test drives Debian's chromium with its chromedriver (never a downloaded browser)
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then \
		echo "browser test: $$(chromium --version 2>/dev/null)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null || \
		echo "could not install chromium + chromium-driver: the studio browser test will skip"; \
	else \
		echo "no chromium / chromedriver and no root apt-get to install them: the studio browser test will skip"; \
	fi

test-all: install
	$(BIN)/pytest -q -m ''

# The declared lower bounds, tested: a separate venv with every dependency at its floor (constraints-floor.txt, the
# versions pyproject.toml's ">=" name), then the fast suite. Docs: docs/data.md, "Installing".
FLOOR_VENV ?= .venv-floor
test-floor:
	$(PYTHON) -m venv $(FLOOR_VENV)
	$(FLOOR_VENV)/bin/pip install -q --upgrade pip
	$(FLOOR_VENV)/bin/pip install -q torch==2.13.0
	$(FLOOR_VENV)/bin/pip install -q -c constraints-floor.txt -e '.[all,dev]'
	$(FLOOR_VENV)/bin/pytest -q

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: install
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks

clean:
	rm -rf $(VENV) $(FLOOR_VENV) build dist src/*.egg-info

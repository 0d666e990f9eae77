# Two commands on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-all install bench clean tools lint fmt

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first, pinned to the CPU wheel on local disk (a bare `torch` pulls CUDA).
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[all]'
	touch $(STAMP)

install: $(STAMP)

# The main job on a shipped example: the 16-64-32-32-5 jet tagger (brevitas, pow2 8/4-bit),
# costed, then compiled to an hls4ml project for the VU13P and verified bit-exact in C-sim.
demo: $(STAMP)
	mkdir -p out
	$(BIN)/codesign inspect examples/jet_tagger_mlp.onnx --graph out/jet_tagger_mlp.svg
	$(BIN)/codesign compile examples/jet_tagger_mlp.onnx --target vu13p -o out/jet_tagger_hls4ml --force --verify

# iverilog/yosys (Debian packages) for the rtl backend's simulation and synthesis tests. Best effort:
# installed only when missing and apt-get is usable as root; never fails the build (tests then skip).
tools:
	-@command -v iverilog >/dev/null && command -v yosys >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    (apt-get update -qq && apt-get install -y -qq iverilog yosys) >/dev/null 2>&1; } || \
	  echo "note: iverilog/yosys not installed (apt-get install -y iverilog yosys); rtl simulation tests will skip"
# chromium (Debian package) renders `codesign report` pages in the browser test; same best-effort rule.
	-@command -v chromium >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    (apt-get update -qq && apt-get install -y -qq chromium) >/dev/null 2>&1; } || \
	  echo "note: chromium not installed (apt-get install -y chromium); the report's browser test will skip"

# The lint gate: ruff format + ruff check (rules in pyproject.toml); `make fmt` fixes what it can.
LINT_PATHS := codesign tests benchmarks examples
lint: $(STAMP)
	$(BIN)/ruff format --check -q $(LINT_PATHS)
	$(BIN)/ruff check -q $(LINT_PATHS)

fmt: $(STAMP)
	$(BIN)/ruff format -q $(LINT_PATHS)
	$(BIN)/ruff check -q --fix $(LINT_PATHS)

test: $(STAMP) tools lint
	$(BIN)/python -m pytest -q

test-all: $(STAMP) tools
	$(BIN)/python -m pytest -q -m ''

bench: $(STAMP)
	$(BIN)/python benchmarks/cost_throughput.py
	$(BIN)/python benchmarks/estimator_accuracy.py --no-da

clean:
	rm -rf $(VENV) build *.egg-info

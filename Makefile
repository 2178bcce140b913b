# cascade: `make demo` installs everything and runs the main job on the built-in sample; `make test` tests;
# `make regressions` reruns the real-data configs against their expected scores (the regression matrix).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
# The shared data folder sits beside the checkout here and in CI; CASCADE_DATA overrides it.
CASCADE_DATA ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),)
export CASCADE_DATA
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
RUNS ?= runs
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench regressions leaderboard clean

install: $(STAMP)

# torch==2.13.0 (CPU) goes in first: otherwise pyserini pulls a CUDA build and ~5 GB of nvidia wheels.
$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev,ray]'
	touch $(STAMP)

# The demo: two pipelines on the built-in sample, then the negation and instruction suites on the sample's
# NevIR-format pairs and instructed queries (and the FollowIR / InstructIR-format collections written for cascade).
DEMO_PIPELINES := configs/sample/bm25.yaml configs/sample/bm25-dense-rerank.yaml
demo: install
	$(BIN)/cascade datasets
	$(BIN)/cascade run configs/sample/bm25.yaml configs/sample/bm25-rm3.yaml --out $(RUNS)/demo
	$(BIN)/cascade suite configs/suites/sample-negation.yaml $(addprefix -p ,$(DEMO_PIPELINES)) --out $(RUNS)/demo
	$(BIN)/cascade suite configs/suites/sample-instruction.yaml $(addprefix -p ,$(DEMO_PIPELINES)) --out $(RUNS)/demo
	$(BIN)/cascade leaderboard $(RUNS)/demo --baseline 'sample-bm25' --baseline bm25

test: install
	$(BIN)/python -m pytest -q

# ruff, then the import-linter contracts (pyproject.toml) on the wheel's layout, assembled under build/layers.
lint: install
	$(BIN)/ruff check .
	$(BIN)/python tests/layers.py

bench: install
	@test -n "$(CASCADE_DATA)" || { echo "make bench reads MS MARCO from the data dir: set CASCADE_DATA"; exit 2; }
	$(BIN)/python bench/bm25_speed.py --data-dir "$(CASCADE_DATA)" --out bench/RESULTS.md
	$(BIN)/python bench/sparse_encoding.py --data-dir "$(CASCADE_DATA)" --out bench/RESULTS.md
	$(BIN)/python bench/seismic_scale.py --out bench/RESULTS.md
	$(BIN)/python bench/cross_encoder_speed.py --data-dir "$(CASCADE_DATA)" --out bench/RESULTS.md
	$(BIN)/python bench/dense_speed.py --data-dir "$(CASCADE_DATA)" --out bench/RESULTS.md
	$(BIN)/python bench/leaderboard_speed.py --out bench/RESULTS.md
	$(BIN)/python bench/ltr_features.py --data-dir "$(CASCADE_DATA)" --out bench/RESULTS.md
	$(BIN)/python bench/shard_bounds.py --data-dir "$(CASCADE_DATA)"
	$(BIN)/python bench/ray_scale.py --data-dir "$(CASCADE_DATA)" --out bench/RESULTS.md
# Hours of work and ~20 GB of disk at the default sizes (100k, 1M, 3M passages); SCALE_SIZES=100000 for a quick point.
	$(BIN)/python bench/scale.py --data-dir "$(CASCADE_DATA)" --work bench/out/scale-data --sizes $(SCALE_SIZES)

# Every suite runs for the standard pipelines, once the regression matrix passes (`cascade verify`: a FAIL leaves
# README.md as it is). Real-data results go to $(RUNS)/real and, as Markdown stamped with the commit, between
# README.md's leaderboard markers; everything goes into the static site $(RUNS)/site. Without a data dir only the
# built-in sample runs, and the README is left as it is.
SCALE_SIZES ?= 100000,1000000,3000000
REAL_CONFIGS ?= $(wildcard configs/msmarco/*.yaml)
# The regression matrix, as Anserini's regressions: every real-data config and configs/regressions/ (figures a suite
# reports, e.g. NevIR's paired accuracy) rerun and checked against its `expected:` block; OK, OKISH (within 1.5x the
# tolerance) or FAIL, and a non-zero exit on FAIL. The sample's expectations run in `make test` (tests/test_verify.py).
REGRESSION_CONFIGS ?= $(REAL_CONFIGS) $(wildcard configs/regressions/*.yaml)
VERIFY := $(BIN)/cascade verify -q
regressions: install
	@test -n "$(CASCADE_DATA)" || { echo "make regressions reads MS MARCO and NevIR from the data dir: set CASCADE_DATA"; exit 2; }
	$(VERIFY) $(REGRESSION_CONFIGS)

SUITE_PIPELINES ?= $(addprefix configs/msmarco/dl19-,bm25.yaml bm25-rm3.yaml dense.yaml bm25-dense-rerank.yaml \
	bm25-ce.yaml bm25-ltr.yaml)
# In the pool protocol bm25 >> dense_rerank ranks each pool exactly as dense does, so BIRCO runs it once.
INSTRUCTION_PIPELINES ?= $(filter-out %-dense-rerank.yaml,$(SUITE_PIPELINES))
SAMPLE_PIPELINES := configs/sample/bm25.yaml configs/sample/bm25-rm3.yaml configs/sample/dense.yaml \
	configs/sample/bm25-dense-rerank.yaml configs/sample/bm25-ltr.yaml
# The cross-validated protocol (issue 15): one LambdaMART per fold over DL19+DL20's judged queries together.
CV_PIPELINES := configs/msmarco/dl19-official-bm25-signals.yaml configs/msmarco/dl20-official-bm25-signals.yaml
# DL19 and DL20 pooled (97 queries), every pipeline also tested against the MiniLM rerank (issue 15's statistics);
# the reference glob matches pooled runs only, so the per-year sections stay as they are.
POOLS := --pool 'msmarco-passage/dl19+msmarco-passage/dl20' --reference 'dl19+dl20-*bm25-dense-rerank'
BASELINES := --baseline '*-bm25' --baseline '*-official-bm25-run' --baseline bm25 --baseline sample-bm25
SUITE := $(BIN)/cascade suite -q
leaderboard: install
	$(BIN)/cascade run configs/sample/*.yaml --out $(RUNS)/sample -q
	$(SUITE) configs/suites/sample-negation.yaml $(addprefix -p ,$(SAMPLE_PIPELINES)) --out $(RUNS)/sample
	$(SUITE) configs/suites/sample-instruction.yaml $(addprefix -p ,$(SAMPLE_PIPELINES)) --out $(RUNS)/sample
	@if [ -n "$(CASCADE_DATA)" ]; then \
	  $(VERIFY) $(REGRESSION_CONFIGS) || { echo "a regression failed (the matrix above): README.md is left as it is"; exit 1; }; \
	  $(SUITE) configs/suites/msmarco.yaml $(addprefix -p ,$(REAL_CONFIGS)) --out $(RUNS)/real && \
	  $(SUITE) configs/suites/negation.yaml $(addprefix -p ,$(SUITE_PIPELINES)) --out $(RUNS)/real && \
	  $(SUITE) configs/suites/instruction.yaml $(addprefix -p ,$(INSTRUCTION_PIPELINES)) --out $(RUNS)/real && \
	  $(SUITE) configs/suites/extrapolation.yaml $(addprefix -p ,$(REAL_CONFIGS)) --out $(RUNS)/real && \
	  $(SUITE) configs/suites/cv.yaml $(addprefix -p ,$(CV_PIPELINES)) --out $(RUNS)/real && \
	  $(BIN)/cascade leaderboard $(RUNS)/real $(BASELINES) $(POOLS) --readme README.md > /dev/null; \
	else echo "no data dir (CASCADE_DATA): the README's real-data leaderboard is left as it is"; fi
	$(BIN)/cascade leaderboard $(RUNS) $(BASELINES) $(if $(CASCADE_DATA),$(POOLS)) --html $(RUNS)/site

clean:
	rm -rf .cascade $(RUNS) bench/out .pytest_cache .ruff_cache
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +

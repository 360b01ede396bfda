# Thin wrappers; each target sets up .venv first (see scripts/setup.sh).
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup run test quick lab benchmarks clean

$(VENV)/.installed: pyproject.toml scripts/setup.sh
	VENV=$(VENV) bash scripts/setup.sh
	touch $@

setup: $(VENV)/.installed

run: setup  ## train the VAE on the embedded digits as a papermill job
	$(BIN)/gentools run vae

test: setup  ## the whole test suite: lint, unit tests, every notebook under nbval and papermill, browser
	bash scripts/need_chromium.sh
	$(BIN)/python -m pytest

quick: setup  ## the fast tests only
	$(BIN)/python -m pytest -m "not slow and not browser"

lab: setup  ## open the notebooks in JupyterLab
	$(BIN)/jupyter lab notebooks/

benchmarks: setup  ## every benchmark (over an hour on 2 cores), then rewrite BENCHMARKS.md; ONLY=name for one
	$(BIN)/python benchmarks/suite.py $(if $(ONLY),--only $(ONLY))

clean:
	rm -rf runs .pytest_cache .ruff_cache

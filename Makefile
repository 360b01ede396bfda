# Thin wrappers; each target sets up .venv first (see scripts/setup.sh).
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup run test quick lab data benchmarks clean

$(VENV)/.installed: pyproject.toml scripts/setup.sh
	VENV=$(VENV) bash scripts/setup.sh
	touch $@

setup: $(VENV)/.installed

run: setup  ## train the VAE on the embedded digits as a papermill job
	$(BIN)/gentools run vae

test: setup  ## the whole test suite: lint, unit tests, every notebook under nbval and papermill, browser
	bash scripts/need_debian_package.sh chromium /usr/bin/chromium "the browser tests" "make quick"
	bash scripts/need_debian_package.sh dataset-fashion-mnist /usr/share/datasets/fashion-mnist \
		"the Fashion-MNIST tests" "make quick"
	$(BIN)/python -m pytest

quick: setup  ## the fast tests only
	$(BIN)/python -m pytest -m "not slow and not browser"

data:  ## Debian's Fashion-MNIST (60,000 + 10,000 28x28 images), for -p data fashion-mnist
	bash scripts/need_debian_package.sh dataset-fashion-mnist /usr/share/datasets/fashion-mnist \
		"-p data fashion-mnist"

lab: setup  ## open the notebooks in JupyterLab
	$(BIN)/jupyter lab notebooks/

benchmarks: setup  ## every benchmark (over an hour on 2 cores), then rewrite BENCHMARKS.md; ONLY=name for one
	$(BIN)/python benchmarks/suite.py $(if $(ONLY),--only $(ONLY))

clean:
	rm -rf runs .pytest_cache .ruff_cache

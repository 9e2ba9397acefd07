# Two commands set everything up: `make run` (the main job) and `make test` (every check).
# Both create (or reuse) the project virtual environment in $(VENV) by themselves.
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
# torch goes in first, pinned, so that no unpinned requirement pulls a multi-GB CUDA build on CPU machines.
TORCH_SPEC ?= torch==2.13.0
PIP := $(BIN)/python -m pip --disable-pip-version-check -q
STAMP := $(VENV)/.installed
export PIP_NO_WARN_SCRIPT_LOCATION=1

.PHONY: setup run test check-sync nbtest pytest export docs docs-deps readme screenshots bench clean

setup: $(STAMP)

$(STAMP): settings.ini setup.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo ">> installing $(TORCH_SPEC), then recsys_nb[dev] into $(VENV)"
	@$(PIP) install "$(TORCH_SPEC)" 2> >(grep -v '^WARNING: Location' >&2)
	@$(PIP) install -e ".[dev]" 2> >(grep -v '^WARNING: Location' >&2)
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/recsys-nb run $(ARGS)

# nbdev_export + nbdev_clean must not change anything: the notebooks are the source of the library.
check-sync: $(STAMP)
	@before="$$(git status --porcelain; git diff | md5sum)"; \
	PATH="$(abspath $(BIN)):$$PATH" nbdev_export && PATH="$(abspath $(BIN)):$$PATH" nbdev_clean; \
	after="$$(git status --porcelain; git diff | md5sum)"; \
	if [ "$$before" != "$$after" ]; then \
	  echo "ERROR: nbdev_export/nbdev_clean changed files: the library is out of sync with the notebooks, or a"; \
	  echo "       notebook is not clean. Review 'git status' / 'git diff' and commit the result."; \
	  git status --short; exit 1; \
	else echo ">> notebooks clean and library in sync"; fi

nbtest: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" XLA_PYTHON_CLIENT_PREALLOCATE=false nbdev_test --n_workers 2 --timing

pytest: $(STAMP)
	$(BIN)/python -m pytest -q tests

test: check-sync nbtest pytest

export: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" nbdev_export && PATH="$(abspath $(BIN)):$$PATH" nbdev_clean

# ---- docs (scripts/build_docs.py): the committed notebook outputs, never re-executed -------------------------------
# `make docs`: the HTML site and the PDF book in _docs/ with registry packages only (pandoc from pypandoc_binary, typst,
# kaleido driving Debian's chromium for static charts). Where Quarto is installed, `python scripts/build_docs.py
# quarto-site` / `quarto-book` build the same through Quarto (nbs/_quarto.yml, _quarto.yml; what deploy.yaml runs).
# `make readme`: README.md from nbs/index.ipynb. `make screenshots`: the docs as a reader sees them (headless
# chromium, pdftoppm) in build/screenshots/, failing on a blank page, a console error or a chart that did not draw.
DOCS_APT := chromium poppler-utils fonts-dejavu-core
DOCS_PIP := pypandoc_binary typst kaleido
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

docs-deps: $(STAMP)
	@missing=""; for p in $(DOCS_APT); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo ">> apt-get install$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  $(SUDO) apt-get install -y -q --no-install-recommends $$missing >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -q >/dev/null && $(SUDO) apt-get install -y -q --no-install-recommends $$missing >/dev/null; }; fi
	@$(BIN)/python -c "import pypandoc, typst, kaleido; pypandoc.get_pandoc_path()" 2>/dev/null || \
	  { echo ">> installing $(DOCS_PIP) into $(VENV)"; $(PIP) install $(DOCS_PIP); }

docs: docs-deps
	$(BIN)/python scripts/build_docs.py site $(DOCS_ARGS)

readme: $(STAMP)
	$(BIN)/python scripts/build_docs.py readme

screenshots: docs
	$(BIN)/python scripts/screenshot_docs.py

clean:
	rm -rf _docs _book _proc build dist *.egg-info

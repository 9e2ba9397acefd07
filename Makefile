# Two commands set everything up: `make run` (the main job) and `make test` (every check).
# Both create (or reuse) the project virtual environment in $(VENV) by themselves.
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
# torch goes in first, pinned. On a machine without an NVIDIA GPU (no working `nvidia-smi`) it comes from PyTorch's
# CPU wheel index (about 200 MB); from PyPI alone the same pin is a CUDA build with about 3 GB of nvidia-* packages.
# Override: `make setup TORCH_INDEX=https://download.pytorch.org/whl/cu128` (a CUDA build), or `TORCH_INDEX=` (pip's
# own configuration only). Where that index cannot be reached, pip falls back to its other sources within seconds.
TORCH_SPEC ?= torch==2.13.0
HAS_NVIDIA := $(shell nvidia-smi -L >/dev/null 2>&1 && echo yes)
TORCH_INDEX ?= $(if $(HAS_NVIDIA),,https://download.pytorch.org/whl/cpu)
TORCH_ARGS := $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX) --timeout 10 --retries 1)
PIP := $(BIN)/python -m pip --disable-pip-version-check
# one line per package as pip collects it, then what was installed: progress without pip's full chatter
# (sed, not grep: nothing to install prints none of these lines, and that is not a failure)
PIP_LINES := 2> >(grep -v -E '^WARNING: (Location|Retrying)|Could not fetch URL' >&2) | sed -u -n -E '/^(Collecting|Processing|Successfully|ERROR)/s/^/   /p'
STAMP := $(VENV)/.installed
export PIP_NO_WARN_SCRIPT_LOCATION=1

.PHONY: setup run test check-sync proc-check nbtest pytest postgres gpu-check export docs docs-deps readme screenshots bench clean

setup: $(STAMP)

$(STAMP): settings.ini setup.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo ">> [1/2] installing $(TORCH_SPEC)$(if $(TORCH_INDEX), from $(TORCH_INDEX) (override: TORCH_INDEX=...)) into $(VENV)"
	@set -o pipefail; $(PIP) install --progress-bar off $(TORCH_ARGS) "$(TORCH_SPEC)" $(PIP_LINES)
	@echo ">> [2/2] installing recsys_nb[dev] (JAX, Flax, Optuna, nbdev, ...) into $(VENV): about 2 minutes on 2 cores"
	@set -o pipefail; $(PIP) install --progress-bar off -e ".[dev]" $(PIP_LINES)
	@echo ">> done: the commands are in $(VENV)/bin (recsys-nb, nbdev_*); 'source $(VENV)/bin/activate' puts them on PATH"
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
	PATH="$(abspath $(BIN)):$$PATH" XLA_PYTHON_CLIENT_PREALLOCATE=false nbdev_test --n_workers 2 --timing --do_print

# two workers (pytest-xdist), each test file on one of them: most tests wait on subprocesses they start; then, alone,
# the tests marked `serial` (worker processes killed or interrupted on a clock), which must not compete for the cores
pytest: $(STAMP) postgres
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m 'not serial' --durations=10 tests
	$(BIN)/python -m pytest -q -m serial --durations=5 tests

# The search's tests against a real PostgreSQL server need Debian's server programs (initdb, pg_ctl); each test starts
# its own throwaway cluster in a temporary folder and stops it. As root with apt-get they are installed here (without
# Debian's default cluster, so that no server is left running); otherwise those tests are skipped and say why.
PG_FOUND = $(shell command -v initdb || ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null)
postgres:
	@if [ -n "$(PG_FOUND)" ]; then echo ">> PostgreSQL server programs found (for the database tests)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo ">> installing Debian's postgresql for the database tests (about a minute; log: build/apt.log)"; mkdir -p build; \
	  mkdir -p /etc/postgresql-common/createcluster.d && echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.d/recsys-nb.conf; \
	  apt_install() { DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql >>build/apt.log 2>&1; }; \
	  { apt_install || { apt-get update -q >>build/apt.log 2>&1 && apt_install; }; } && echo ">> installed" \
	    || echo ">> could not install postgresql (see build/apt.log): the database tests will be skipped"; \
	else echo ">> PostgreSQL's server is not installed and cannot be installed by this user: the database tests will be skipped"; fi

# nbdev's processing of the notebooks into _proc/ (scripts/docs/nbdev_proc.py: nbdev's proc_nbs, the first half of
# nbdev_docs), the input of both docs routes: every show_doc and every cell nbdev runs to make them is executed, so the
# docs' processing is checked here too, where neither the docs tools nor Quarto are needed. All notebooks, from scratch.
proc-check: $(STAMP)
	@mkdir -p build; $(BIN)/python scripts/build_docs.py proc --force > build/proc.log 2>&1 \
	  && echo ">> nbdev processing: every notebook processed (the docs' input, in _proc/)" \
	  || { grep -v -e '^  ' -e 'Found cells containing imports' build/proc.log | tail -30; echo "ERROR: nbdev processing failed (log: build/proc.log)"; exit 1; }

test: check-sync proc-check nbtest pytest

export: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" nbdev_export && PATH="$(abspath $(BIN)):$$PATH" nbdev_clean

# ---- docs (scripts/build_docs.py): one processing, two renderers -----------------------------------------------------
# Every docs command first brings _proc/ up to date (nbdev's processing, as in proc-check, of the notebooks changed
# since; log in build/proc.log), then renders it; the notebooks' committed outputs are never re-executed as a whole.
# `make docs`: the HTML site and the PDF book in _docs/ with registry packages only (pandoc from pypandoc_binary, typst,
# kaleido driving Debian's chromium for static charts). Where Quarto is installed, `python scripts/build_docs.py
# quarto-site` / `quarto-book` render the same _proc/ through Quarto (nbs/_quarto.yml, _quarto.yml; what deploy.yaml
# runs). `make readme`: README.md from the processed nbs/index.ipynb. `make screenshots`: the docs as a reader sees
# them (headless chromium, pdftoppm) in build/screenshots/, failing on a blank page, a console error or a chart that
# did not draw; `make screenshots SHOTS_ARGS="--pages all --pdf-pages 1-3,78"` shoots every page and those PDF pages.
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
	$(BIN)/python scripts/screenshot_docs.py $(SHOTS_ARGS)

clean:
	rm -rf _docs _book _proc build dist *.egg-info

# ---- the GPU check (scripts/gpu_check.py) -------------------------------------------------------------------------
# On a machine with an NVIDIA GPU: about 8 minutes of figures in build/gpu-check.json (UserCF and MF on the GPU in both
# frameworks, the Prize-shape MF epoch, Shop the Look at 512 x 512, the `#| gpu` cells). Without one: a dry run naming
# what it would measure. A bare GPU machine has PyTorch, JAX, Flax, Optax, NumPy and pandas but not the pure-Python
# rest: `scripts/gpu_wheels.sh`, run beforehand where PyPI is reachable, puts it in .whl/, installed here first.
gpu-check:
	@if [ -d .whl ]; then python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/gpu-site .whl/*.whl; fi; \
	PY=$$( [ -x $(BIN)/python ] && echo $(BIN)/python || echo python3 ); \
	PATH="/tmp/gpu-site/bin:$(abspath $(BIN)):$$PATH" PYTHONPATH="/tmp/gpu-site:$$PYTHONPATH" $$PY scripts/gpu_check.py $(ARGS)

#!/bin/sh
# The pure-Python packages that `make gpu-check` needs and a bare CUDA machine image (Python
# 3.12 with PyTorch, JAX, Flax, Optax, NumPy, pandas, numba) lacks, downloaded here into .whl/ to travel with the tree.
set -e
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform any -d .whl \
  optuna alembic sqlalchemy colorlog mako plotly narwhals scikit-posthocs seaborn \
  nbdev==2.4.14 execnb==0.1.18 fastcore==1.14.5 ghapi==1.1.1 asttokens astunparse watchdog \
  ipython traitlets jedi parso pexpect ptyprocess prompt_toolkit wcwidth pygments stack_data executing pure_eval \
  decorator matplotlib-inline 2>&1 | grep -v "^WARNING: Location" || true
du -sh .whl

"""First contact: the README runs as written, and `make setup` picks PyTorch's CPU wheels on a machine without an
NVIDIA GPU. The README's `make` lines are what CI runs (`make test`) and the main job (`recsys-nb run`, tested in
test_pipeline.py); `pip install git+...` needs the published repository."""
import json, os, re, shutil, subprocess, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / 'README.md').read_text()
BIN = Path(sys.executable).parent


def blocks(lang:str) -> list[str]:
    "The README's fenced code blocks of one language, in order."
    return re.findall(rf'^``` ?{lang}\n(.*?)^```', README, flags=re.S | re.M)


def test_python_blocks_run_as_written(tmp_path):
    code = '\n'.join(blocks('python'))
    assert 'from recsys_nb import' in code
    r = subprocess.run([sys.executable, '-c', code], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f'the README\'s Python blocks, run in order, fail:\n{r.stderr[-3000:]}'


def test_shell_blocks_run_as_written(tmp_path):
    "Every `recsys-nb` line, with the project's console script on PATH (what `source .venv/bin/activate` does)."
    cmds = [l.split(' #')[0].strip() for b in blocks('sh') for l in b.splitlines() if l.startswith('recsys-nb ')]
    assert cmds, 'the README shows no recsys-nb command'
    env = {**os.environ, 'PATH': f'{BIN}{os.pathsep}{os.environ["PATH"]}'}
    for cmd in cmds:
        run = cmd.replace('/tmp/', f'{tmp_path}/')                       # the README's scratch paths, kept in the test
        r = subprocess.run(run, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, f'{cmd}\n{r.stderr[-2000:]}'
        if '--json' in cmd: assert isinstance(json.loads(r.stdout), dict), f'{cmd}: stdout is not one JSON object'


def test_readme_says_how_the_command_gets_on_path():
    assert 'source .venv/bin/activate' in README


def _setup_plan(tmp_path, with_gpu:bool) -> str:
    "The commands `make setup` would run (`make -n`) for a new venv, with or without an `nvidia-smi` that works."
    fake = tmp_path / 'bin'; fake.mkdir(exist_ok=True)
    if with_gpu: (fake / 'nvidia-smi').write_text('#!/bin/sh\necho "GPU 0: fake"\n'); (fake / 'nvidia-smi').chmod(0o755)
    path = os.pathsep.join([str(fake)] + [p for p in os.environ['PATH'].split(os.pathsep)
                                          if not (Path(p) / 'nvidia-smi').exists()])
    env = {k: v for k, v in os.environ.items() if k != 'TORCH_INDEX'}
    r = subprocess.run(['make', '-n', 'setup', f'VENV={tmp_path}/venv'], cwd=ROOT, capture_output=True, text=True,
                       env={**env, 'PATH': path}, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.mark.skipif(shutil.which('make') is None, reason='make is not installed')
def test_setup_takes_cpu_wheels_without_an_nvidia_gpu(tmp_path):
    torch_line = next(l for l in _setup_plan(tmp_path, False).splitlines() if 'torch==' in l and ' install ' in l and not l.startswith('echo'))
    assert '--extra-index-url https://download.pytorch.org/whl/cpu' in torch_line
    torch_line = next(l for l in _setup_plan(tmp_path, True).splitlines() if 'torch==' in l and ' install ' in l and not l.startswith('echo'))
    assert 'download.pytorch.org/whl/cpu' not in torch_line


@pytest.mark.parametrize('pip_says,shown', [('Requirement already satisfied: numpy\n', ''),     # nothing to install
                                            ('Collecting numpy\nDownloading x\nSuccessfully installed numpy\n',
                                             '   Collecting numpy\n   Successfully installed numpy\n')])
def test_setup_shows_pip_progress_and_an_up_to_date_venv_is_no_failure(tmp_path, pip_says, shown):
    "The Makefile's filter of pip's output (PIP_LINES) keeps one line per package and succeeds when pip installs nothing."
    mk = tmp_path / 'Makefile'
    defs = [l for l in (ROOT / 'Makefile').read_text().splitlines() if l.startswith(('SHELL', 'PIP_LINES'))]
    (tmp_path / 'pip.txt').write_text(pip_says)
    mk.write_text('\n'.join(defs) + '\nt:\n\t@set -o pipefail; cat pip.txt $(PIP_LINES)\n')
    r = subprocess.run(['make', '-s', '-f', str(mk), 't'], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout == shown, (r.returncode, r.stdout, r.stderr)

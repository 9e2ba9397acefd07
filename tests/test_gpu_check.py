"""`make gpu-check` (scripts/gpu_check.py): the dry run names every check; a check's subprocess, JSON and time-out
machinery works here (the `env` check, which needs no GPU); without a GPU nothing is measured."""
import importlib.util, json, os, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location('gpu_check', ROOT / 'scripts' / 'gpu_check.py')
gc = importlib.util.module_from_spec(spec); spec.loader.exec_module(gc)


def test_dry_run_names_every_check(tmp_path):
    rep = gc.main(['--dry-run', '--out', str(tmp_path / 'g.json')])
    assert rep['dry_run'] and set(rep['checks']) == set(gc.CHECKS)
    for name, c in rep['checks'].items():
        assert c['status'] == 'planned' and c['measures'] and c['timeout_s'] > 0, name
    assert json.loads((tmp_path / 'g.json').read_text()) == rep


def test_every_check_is_valid_python():
    for name, (_, _, code) in gc.CHECKS.items(): compile(code, name, 'exec')


def test_a_check_runs_in_its_subprocess():
    r = gc.run_check('env', 300)
    assert r['status'] == 'ok', r
    assert r['result']['torch'] and r['result']['jax_devices']


def test_make_target_without_a_gpu(tmp_path):
    if gc.has_gpu(): return                                     # on a GPU machine this would run the real check
    env = {k: v for k, v in os.environ.items() if k not in ('MAKEFLAGS', 'MAKELEVEL', 'MFLAGS')}   # also when run by `make test`
    r = subprocess.run(['make', '--no-print-directory', 'gpu-check', f'ARGS=--out {tmp_path}/g.json'], cwd=ROOT, capture_output=True,
                       text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads(r.stdout.strip().splitlines()[-1])
    assert rep['dry_run'] and not rep['gpu'] and 'no NVIDIA GPU here' in r.stderr

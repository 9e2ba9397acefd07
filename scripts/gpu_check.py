"""The GPU check: one prepared command for a machine with one NVIDIA GPU (H100/H200: about 8 minutes); on a machine
without one, a dry run that names what it would measure.

    python scripts/gpu_check.py [--out build/gpu-check.json] [--dry-run] [--only NAME ...] [--budget SECONDS]

Each check runs in its own subprocess with its own time-out, so that one failure or hang costs only itself; a global
budget skips (and names) the checks that no longer fit. One JSON object of figures is written to --out and printed
as the last line of stdout. `make gpu-check` runs it (installing first the pure-Python wheels that a bare GPU machine
lacks, when scripts/gpu_wheels.sh has put them in .whl/).
"""
from __future__ import annotations
import argparse, json, os, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# name: (what it measures, time-out in seconds, the Python code of the check: prints one JSON object last)
CHECKS = {
    'env': ('the GPU, the driver, and what PyTorch and JAX see', 60, r'''
import json, shutil, subprocess, torch, jax
smi = subprocess.run(['nvidia-smi', '--query-gpu=name,memory.total,driver_version', '--format=csv,noheader'],
                     capture_output=True, text=True).stdout.strip() if shutil.which('nvidia-smi') else None
print(json.dumps({'nvidia_smi': smi, 'torch': torch.__version__, 'torch_cuda': torch.cuda.is_available(),
                  'torch_devices': torch.cuda.device_count(), 'jax': jax.__version__,
                  'jax_devices': [str(d) for d in jax.devices()]}))
'''),
    'usercf': ("UserCF (cosine, all neighbours) at the course's shape with the torch and jax backends on the GPU: fit "
               "and predict seconds, test RMSE equal to the NumPy backend's", 150, r'''
import json, time, numpy as np
from recsys_nb import UserCF
from recsys_nb.data import load_netflix
from recsys_nb.synth import default_dataset
data = load_netflix(default_dataset('netflix'))
out = {}
for backend in ('numpy', 'torch', 'jax'):
    m = UserCF(backend=backend)
    m.fit(data).test(data.test)                                     # first fit: compilation, outside the clock
    t0 = time.perf_counter(); m.fit(data); t1 = time.perf_counter(); r = m.test(data.test); t2 = time.perf_counter()
    out[backend] = {'fit_s': round(t1 - t0, 3), 'test_s': round(t2 - t1, 3), 'rmse': r['rmse']}
out['same_rmse'] = all(abs(out[b]['rmse'] - out['numpy']['rmse']) < 1e-4 for b in ('torch', 'jax'))
print(json.dumps(out))
'''),
    'mf_dense': ("the course's dense MF trained to its tolerance (1e-6) in both frameworks on the GPU: epochs, seconds, "
                 "test RMSE (the course's own run: 8,898 epochs PyTorch, 5,503 JAX)", 240, r'''
import json
from recsys_nb.data import load_netflix
from recsys_nb.mf import evaluate_mf
from recsys_nb.synth import default_dataset
data = load_netflix(default_dataset('netflix'))
out = {}
for backend in ('torch', 'jax'):
    evaluate_mf(data, backend, 'dense', max_epochs=3)               # compilation, outside the clock
    r = evaluate_mf(data, backend, 'dense')
    out[backend] = {k: r[k] for k in ('epochs', 'seconds', 'seconds_per_epoch', 'train_rmse', 'test_rmse', 'stopped')}
print(json.dumps(out))
'''),
    'mf_prize_epoch': ("the sparse minibatch MF epoch at the full Netflix Prize's shape (480,189 x 17,770, 100M ratings) "
                       "on the GPU, both frameworks (anchor: cuMF_SGD, 0.16 s an epoch)", 300,
                   'import runpy, sys; sys.argv = ["mf_scale.py", "--backend", "both", "--epochs", "2"]; '
                   'runpy.run_path("benchmarks/mf_scale.py", run_name="__main__")'),
    'stl_512': ("Shop the Look at 512 x 512 (the 'gpu' config, 300 steps of the 'large' synthetic set): steps per "
                "second and the test AUC so far", 300, r'''
import json, time
from recsys_nb.stl import run_stl
from recsys_nb.stl_synth import synth_stl
from recsys_nb.synth import cache_dir
d = cache_dir() / 'stl-large'
t0 = time.perf_counter()
if not (d / 'synth.json').exists(): synth_stl(d, 'large', seed=0)
t1 = time.perf_counter()
_, res = run_stl(d, 'gpu', workdir=None, fresh=True, progress=False, steps=300, eval_every=300, checkpoint_every=300)
print(json.dumps({'synth_s': round(t1 - t0, 1), 'steps_per_s': round(300 / res['train_seconds'], 2),
                  **{k: res[k] for k in ('test_auc', 'hr_at_10', 'train_seconds', 'image_size')}}))
'''),
    'gpu_cells': ('the `#| gpu` cells of every chapter, with the chapters around them (nbdev_test --flags gpu)', 420, r'''
import json, pathlib, subprocess
nbs = sorted(str(p) for p in pathlib.Path('nbs').glob('*.ipynb') if '#| gpu' in p.read_text())
runs = {n: subprocess.run(['nbdev_test', '--flags', 'gpu', '--path', n], capture_output=True, text=True) for n in nbs}
print(json.dumps({n: {'ok': r.returncode == 0, 'tail': (r.stdout + r.stderr)[-300:]} for n, r in runs.items()}))
'''),
}


def has_gpu() -> bool:
    try: return subprocess.run(['nvidia-smi', '-L'], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired): return False


def run_check(name:str, timeout:float) -> dict:
    "Run one check in a subprocess: its JSON (the last line of stdout), or what went wrong."
    _, _, code = CHECKS[name]
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join([str(ROOT), os.environ.get('PYTHONPATH', '')]),
           'XLA_PYTHON_CLIENT_PREALLOCATE': 'false', 'PYTHONUNBUFFERED': '1'}
    t0 = time.perf_counter()
    try: r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=timeout)
    except subprocess.TimeoutExpired: return {'status': 'timeout', 'seconds': round(time.perf_counter() - t0, 1)}
    out = {'seconds': round(time.perf_counter() - t0, 1)}
    lines = r.stdout.strip().splitlines()
    try: out.update(status='ok' if r.returncode == 0 else 'failed', result=json.loads(lines[-1]))
    except (IndexError, json.JSONDecodeError): out.update(status='failed', error=(r.stderr or r.stdout).strip()[-1500:])
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--out', default=str(ROOT / 'build' / 'gpu-check.json'), help='the JSON of figures')
    p.add_argument('--dry-run', action='store_true', help='name the checks without running them (the default without a GPU)')
    p.add_argument('--only', nargs='*', choices=list(CHECKS), help='run only these checks')
    p.add_argument('--budget', type=float, default=480, help='seconds for all checks together (default 480)')
    a = p.parse_args(argv)
    names, gpu = a.only or list(CHECKS), has_gpu()
    dry = a.dry_run or not gpu
    report = {'gpu': gpu, 'dry_run': dry, 'budget_s': a.budget, 'checks': {}}
    if dry: print('gpu-check: ' + ('dry run' if gpu else 'no NVIDIA GPU here: dry run') + '; it would measure:', file=sys.stderr)
    t0 = time.perf_counter()
    for n in names:
        what, timeout, _ = CHECKS[n]
        if dry:
            report['checks'][n] = {'status': 'planned', 'measures': what, 'timeout_s': timeout}
            print(f'  {n:<15} {what} (at most {timeout} s)', file=sys.stderr); continue
        left = a.budget - (time.perf_counter() - t0)
        if left < 30: report['checks'][n] = {'status': 'skipped', 'reason': 'over the budget'}; continue
        print(f'gpu-check: {n} (at most {min(timeout, left):.0f} s) ...', file=sys.stderr, flush=True)
        report['checks'][n] = {'measures': what, **run_check(n, min(timeout, left))}
        print(f'gpu-check: {n}: {report["checks"][n]["status"]} in {report["checks"][n]["seconds"]} s', file=sys.stderr, flush=True)
    report['seconds'] = round(time.perf_counter() - t0, 1)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(report, indent=1) + '\n')
    print(json.dumps(report))
    return report


if __name__ == '__main__': main()

"""Data-parallel matrix factorisation: two local processes (torchrun / JAX's multi-process runtime, CPU) against one."""
import json, os, subprocess, sys
from pathlib import Path

import numpy as np
import pytest

from recsys_nb.data import load_netflix
from recsys_nb.synth import synth_netflix
from recsys_nb.mf import MFData, mf_config, train_mf
from recsys_nb.mf_dist import check_dist_config, combine_stats, launch, local_stats, shard_bounds, shard_data

pytestmark = pytest.mark.serial   # see conftest.py: run alone, after the parallel tests

TIMEOUT = 300   # seconds per multi-process run (they take ~10 s)
PARAMS = ('U', 'V', 'bu', 'bi')


@pytest.fixture(scope='module')
def tiny_dir(tmp_path_factory):
    return synth_netflix(tmp_path_factory.mktemp('tiny'), 'tiny', seed=0)


@pytest.fixture(scope='module')
def tiny(tiny_dir):
    return load_netflix(tiny_dir)


def _options(cfg) -> list:
    "Command-line options of the `MFConfig` fields the tests set."
    out = ['--no-progress']
    for k in ('k', 'max_epochs', 'tol', 'dtype', 'val_frac', 'lmd', 'lr'):
        out += [f"--{k.replace('_', '-')}", str(getattr(cfg, k))]
    return out


def _two_processes(backend, cfg, data_dir, out_dir) -> tuple[dict, list]:
    "(process 0's JSON, every process's parameters) of a 2-process run."
    res = launch(backend, 2, ['--data', str(data_dir), *_options(cfg), '--save-factors', str(out_dir)], timeout=TIMEOUT)
    return res, [dict(np.load(Path(out_dir)/f'factors_rank{r}.npz')) for r in range(2)]


def _max_diff(a:dict, b:dict) -> float:
    return max(float(np.abs(np.asarray(a[k], np.float64) - np.asarray(b[k], np.float64)).max()) for k in PARAMS)


def test_shards_tile_the_data(tiny):
    full = MFData.from_rating_data(tiny, val_frac=0.1)
    for world in (1, 2, 3):
        shards = [shard_data(full, r, world) for r in range(world)]
        for name in ('train', 'val', 'test'):
            for a, parts in zip(getattr(full, name), zip(*(getattr(s, name) for s in shards))):
                np.testing.assert_array_equal(a, np.concatenate(parts))
        assert combine_stats([local_stats(s.train[2]) for s in shards])[0] == full.n_train
        assert abs(combine_stats([local_stats(s.train[2]) for s in shards])[1] - full.mu) < 1e-12
    assert [shard_bounds(10, r, 3) for r in range(3)] == [(0, 3), (3, 6), (6, 10)]


def test_config_checks():
    with pytest.raises(ValueError, match='batch_size=0'): check_dist_config(mf_config('sparse', batch_size=100))
    with pytest.raises(ValueError, match="mode='sparse'"): check_dist_config(mf_config('dense'))
    with pytest.raises(ValueError, match='no checkpoints'): check_dist_config(mf_config('sparse', checkpoint_dir='x'))


@pytest.mark.parametrize('backend,extra', [('torch', dict(val_frac=0.1)), ('jax', {})])
def test_two_processes_equal_one_float64(tiny, tiny_dir, tmp_path, backend, extra):
    "2 processes = 1 process: parameters, train/validation/test RMSE and epochs, float64, to 1e-5 (seen: ~1e-15)."
    cfg = mf_config('sparse', k=8, max_epochs=15, tol=0.0, dtype='float64', progress=False, **extra)
    one = train_mf(cfg, tiny, backend)
    two, f = _two_processes(backend, cfg, tiny_dir, tmp_path)
    for k in f[0]: np.testing.assert_array_equal(f[0][k], f[1][k])          # the replicas are identical
    assert _max_diff(one.trainer.factors(), f[0]) < 1e-5
    for k, v in one.metrics.items(): assert abs(two[k] - v) < 1e-5, (k, two[k], v)
    assert two['epochs'] == len(one.history) == 15 and two['processes'] == 2 and two['train_ratings'] == one.trainer.data.n_train


def test_torch_two_processes_equal_one_float32(tiny, tiny_dir, tmp_path):
    "The default float32: the same sums in another order, within 1e-5 after 20 Adam steps (seen: ~3e-7)."
    cfg = mf_config('sparse', k=8, max_epochs=20, tol=0.0, progress=False)
    one = train_mf(cfg, tiny, 'torch')
    two, f = _two_processes('torch', cfg, tiny_dir, tmp_path)
    assert _max_diff(one.trainer.factors(), f[0]) < 1e-5
    for k, v in one.metrics.items(): assert abs(two[k] - v) < 1e-5


def test_jax_two_processes_equal_two_devices_float32(tiny_dir, tmp_path):
    """JAX in float32: two processes compute exactly what one process computes on a mesh of two devices (the same
    program, the same layout); the single-device default path (CSR products) differs from both by ~1e-5."""
    cfg = mf_config('sparse', k=8, max_epochs=10, tol=0.0, progress=False)
    two, f = _two_processes('jax', cfg, tiny_dir, tmp_path)
    code = ("import sys, json, numpy as np; from recsys_nb.data import load_netflix; from recsys_nb.mf import mf_config, train_mf\n"
            "run = train_mf(mf_config('sparse', k=8, max_epochs=10, tol=0.0, progress=False, n_devices=2), load_netflix(sys.argv[1]), 'jax')\n"
            "np.savez(sys.argv[2], **run.trainer.factors()); print(json.dumps(run.metrics))")
    env = {**os.environ, 'XLA_FLAGS': '--xla_force_host_platform_device_count=2'}
    r = subprocess.run([sys.executable, '-c', code, str(tiny_dir), str(tmp_path/'mesh.npz')], capture_output=True, text=True,
                       env=env, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr[-2000:]
    mesh = dict(np.load(tmp_path/'mesh.npz'))
    assert _max_diff(mesh, f[0]) < 1e-7
    metrics = json.loads(r.stdout.strip().splitlines()[-1])
    for k, v in metrics.items(): assert abs(two[k] - v) < 1e-6


def test_errors_are_one_line_exit_2(tiny_dir):
    base = [sys.executable, '-m', 'recsys_nb.mf_dist', 'jax', '--coordinator', '127.0.0.1:1', '--num-processes', '2', '--process-id', '0']
    for extra, msg in ((['--lr', '-1'], 'MFConfig.lr must be'), (['--data', str(tiny_dir/'missing')], 'missing')):
        r = subprocess.run(base + extra, capture_output=True, text=True, timeout=TIMEOUT)
        assert r.returncode == 2 and msg in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    with pytest.raises(RuntimeError, match='exit codes'):
        launch('torch', 2, ['--data', str(tiny_dir/'missing')], timeout=TIMEOUT)


def test_import_loads_no_framework():
    code = ("import sys, recsys_nb.mf_dist; bad = [m for m in sys.modules if m.split('.')[0] in ('jax', 'flax', 'optax', 'torch')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, '-c', code], check=True, timeout=TIMEOUT)

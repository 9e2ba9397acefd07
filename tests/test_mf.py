"""Matrix factorisation: JAX/PyTorch twins, dense = sparse, checkpoint resume, multi-device, the `mf` command."""
import json, os, subprocess, sys, tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from recsys_nb.data import load_netflix
from recsys_nb.synth import default_dataset
from recsys_nb import mf_jax, mf_torch
from recsys_nb.mf import MFData, mf_config, run_trainer, train_mf

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def tiny():
    return MFData.from_rating_data(load_netflix(default_dataset('tiny')), val_frac=0.1)


def _twin_curves(data, **options):
    cfg = mf_config(**{'progress': False, 'tol': 0, 'max_epochs': 100, **options})
    jt = mf_jax.JaxMFTrainer(cfg, data)
    init = jt.factors()
    a = run_trainer(jt).history.loss.to_numpy()
    b = mf_torch.train_and_evaluate(cfg, data, init=init).history.loss.to_numpy()
    return a, b


@pytest.mark.parametrize('options', [dict(mode='dense'), dict(mode='sparse'), dict(mode='sparse', batch_size=1000, max_epochs=20),
                                     dict(mode='als', max_epochs=10)], ids=['dense', 'sparse', 'minibatch', 'als'])
def test_twins_float32(tiny, options):
    "From the same initial factors, JAX and PyTorch follow the same loss curve (100 epochs, float32) to 1e-4 relative."
    a, b = _twin_curves(tiny, **options)
    assert len(a) == len(b)
    assert np.max(np.abs(a - b) / np.abs(a)) < 1e-4


def _random_ratings(n_users, n_movies, seed):
    "(rng, users, movies, ratings): half of the cells of a small matrix, sorted by user then movie, random 1-5 ratings."
    rng = np.random.default_rng(seed)
    pairs = np.sort(rng.choice(n_users * n_movies, size=max(1, n_users * n_movies // 2), replace=False))
    u, i = (pairs // n_movies).astype(np.int32), (pairs % n_movies).astype(np.int32)
    return rng, u, i, rng.integers(1, 6, len(pairs)).astype(np.float32)


SMALL_PROBLEMS = dict(n_users=st.integers(1, 12), n_movies=st.integers(1, 12), k=st.integers(1, 6), biased=st.booleans(),
                      lmd=st.sampled_from([0.0, 0.3]), seed=st.integers(0, 10_000))


@settings(max_examples=8, deadline=None)
@given(**SMALL_PROBLEMS)
def test_dense_equals_sparse(n_users, n_movies, k, biased, lmd, seed):
    "The dense objective (full matrix, mask), the sparse one (gathers) and `csr_sums` (CSR products) agree in value and gradients to 1e-5."
    import jax, jax.numpy as jnp
    rng, u, i, r = _random_ratings(n_users, n_movies, seed)
    p = {'U': jnp.asarray(rng.normal(0, .5, (n_users, k)), jnp.float32), 'V': jnp.asarray(rng.normal(0, .5, (n_movies, k)), jnp.float32)}
    if biased: p.update(bu=jnp.asarray(rng.normal(0, .3, n_users), jnp.float32), bi=jnp.asarray(rng.normal(0, .3, n_movies), jnp.float32))
    mu = 3.0 if biased else 0.0
    R = jnp.zeros((n_users, n_movies)).at[u, i].set(r)
    # compiled whole (as training runs them; op by op, each example would compile every primitive for its shapes)
    dense = jax.jit(jax.value_and_grad(mf_jax.dense_objective, has_aux=True), static_argnums=3)
    sparse = jax.jit(jax.value_and_grad(mf_jax.sparse_objective, has_aux=True), static_argnums=6)
    (ld, _), gd = dense(p, mu, R, lmd)
    (ls, _), gs = sparse(p, mu, u, i, r, jnp.ones_like(r), lmd)
    assert abs(float(ld - ls)) <= 1e-5 * max(1.0, abs(float(ld)))
    for name in p:
        assert float(jnp.abs(gd[name] - gs[name]).max()) <= 1e-5 * max(1.0, float(jnp.abs(gd[name]).max()))
    # the explicit gradient of full-batch sparse mode (CSR products) agrees with autodiff too
    order = np.lexsort((i, u)); u, i, r = u[order], i[order], r[order]
    by_user, by_movie = (tuple(map(jnp.asarray, t)) for t in mf_jax.rating_layout(u, i, r, n_users, n_movies))
    oc, _, gc = jax.jit(mf_jax.csr_sums, static_argnums=5)(p, mu, (jnp.asarray(u)[None], jnp.asarray(i)[None]), by_user, by_movie, lmd)
    assert abs(float(oc - ls)) <= 1e-5 * max(1.0, abs(float(ls)))
    for name in p:
        assert float(jnp.abs(gc[name] - gs[name]).max()) <= 1e-5 * max(1.0, float(jnp.abs(gs[name]).max()))


KERNELS = ['torch'] + (['numba'] if mf_torch.numba is not None else [])


@settings(max_examples=10, deadline=None)
@given(**SMALL_PROBLEMS)
def test_explicit_gradients_match_autograd(n_users, n_movies, k, biased, lmd, seed):
    "`torch_sparse_grads` (fused numba pass or SDDMM + SpMMs, no autograd) = autograd through `torch_sparse_objective`, to 1e-5."
    import torch
    rng, u, i, r = _random_ratings(n_users, n_movies, seed)
    r = torch.from_numpy(r)
    pat = mf_torch.RatingPattern(u, i, n_users, n_movies)
    model = mf_torch.TorchMF(n_users, n_movies, k, biased=biased, mu=3.0, init_std=0.5, seed=seed)
    if biased:
        with torch.no_grad(): model.bu.normal_(0, 0.3); model.bi.normal_(0, 0.3)
    obj, sse = mf_torch.torch_sparse_objective(model, pat, r, lmd)
    names = [n for n, _ in model.named_parameters()]
    ref = dict(zip(names, torch.autograd.grad(obj, list(model.parameters()))))
    for kernel in KERNELS:
        o, s, g = mf_torch.torch_sparse_grads(model, pat, r, lmd, kernel)
        assert abs(o.item() - obj.item()) <= 1e-5 * max(1.0, abs(obj.item())) and abs(s.item() - sse.item()) <= 1e-5 * max(1.0, sse.item())
        assert sorted(g) == sorted(names)
        for name in names:
            assert float((g[name] - ref[name]).abs().max()) <= 1e-5 * max(1.0, float(ref[name].abs().max())), (kernel, name)
        pred = mf_torch.pattern_predictions(model, pat, kernel)
        assert float((pred - mf_torch.predict_pattern(model, pat).detach()).abs().max()) <= 1e-5 * 10


@pytest.mark.skipif(len(KERNELS) < 2, reason='numba not installed')
@pytest.mark.parametrize('options', [dict(), dict(batch_size=1000, max_epochs=10)], ids=['full', 'minibatch'])
def test_kernels_same_run(tiny, options):
    "The PyTorch sparse trainer follows the same loss curve with the fused numba kernel and with PyTorch's kernels."
    cfg = mf_config('sparse', **{'progress': False, 'tol': 0, 'max_epochs': 40, **options})
    curves = []
    for kernel in KERNELS:
        tr = mf_torch.TorchMFTrainer(cfg, tiny)
        tr.kernel = kernel
        curves.append(run_trainer(tr).history)
    a, b = curves
    assert np.max(np.abs(a.loss.to_numpy() - b.loss.to_numpy()) / a.loss.to_numpy()) < 1e-5
    assert np.max(np.abs(a.test_rmse.to_numpy() - b.test_rmse.to_numpy())) < 1e-5


def _interrupt_at(n):
    def callback(epoch, metrics, trainer):
        if epoch + 1 == n: raise KeyboardInterrupt
    return callback


@pytest.mark.parametrize('backend', ['jax', 'torch'])
@pytest.mark.parametrize('mode,options', [('sparse', dict(batch_size=1000, max_epochs=10)), ('sparse', dict(max_epochs=12, patience=3, lr=0.005)),
                                          ('bayes', dict(max_epochs=12, burn_in=4))], ids=['minibatch', 'early-stopping', 'bayes'])
def test_resume_is_identical(tiny, backend, mode, options):
    "A run interrupted and resumed from its checkpoint gives the same history and factors as an uninterrupted run."
    with tempfile.TemporaryDirectory() as d:
        cfg = mf_config(mode, k=8, tol=0, progress=False, checkpoint_dir=d, checkpoint_every=3, **options)
        whole = train_mf(replace(cfg, checkpoint_dir=None), tiny, backend)
        part = train_mf(cfg, tiny, backend, callback=_interrupt_at(5))
        assert part.info['stopped'] == 'interrupted' and len(part.history) == 5
        rest = train_mf(cfg, tiny, backend)
    assert rest.info['resumed_from'] == 5
    assert rest.history.equals(whole.history)
    fw, fr = whole.trainer.factors(), rest.trainer.factors()
    for k in fw: np.testing.assert_array_equal(fr[k], fw[k])
    assert rest.metrics == whole.metrics


def test_early_stopping_restores_best(tiny):
    "With a validation set the run stops on it and returns the best epoch's parameters."
    run = mf_jax.train_and_evaluate(mf_config('sparse', k=8, lr=0.05, lmd=0.0, max_epochs=200, patience=5, progress=False), tiny)
    assert run.info['stopped'] == 'early_stopping'
    best = run.info['best_epoch']
    assert best == int(run.history.val_rmse.idxmin())
    assert abs(run.val_rmse - run.history.val_rmse.min()) < 1e-6


MULTI = '''
import json, numpy as np, jax
from recsys_nb.data import load_netflix
from recsys_nb.synth import default_dataset
from recsys_nb.mf import MFData, mf_config
from recsys_nb.mf_jax import train_and_evaluate
data = MFData.from_rating_data(load_netflix(default_dataset('tiny')))
out = {'devices': len(jax.devices())}
for name, extra in (('full', {}), ('minibatch', {'batch_size': 1000}), ('chunked', {'chunk_size': 1000})):
    runs = [train_and_evaluate(mf_config('sparse', k=8, max_epochs=15, tol=0, n_devices=n, progress=False, **extra), data)
            for n in (1, 2)]
    a, b = (r.history.loss.to_numpy() for r in runs)
    fa, fb = (r.trainer.factors() for r in runs)
    out[name] = [float(np.max(np.abs(a - b) / np.abs(a))), max(float(np.max(np.abs(fa[k] - fb[k]))) for k in ('U', 'V', 'bu', 'bi')),
                 runs[0].test_rmse, runs[1].test_rmse]
print(json.dumps(out))
'''


def test_two_devices_match_one():
    "The data-parallel sparse trainer on two (simulated CPU) devices gives the one-device result to 1e-5."
    env = {**os.environ, 'XLA_FLAGS': '--xla_force_host_platform_device_count=2', 'JAX_PLATFORMS': 'cpu'}
    res = subprocess.run([sys.executable, '-c', MULTI], env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout)
    assert out['devices'] == 2
    for name in ('full', 'minibatch', 'chunked'):
        rel_loss, max_param_diff, t1, t2 = out[name]
        assert rel_loss < 1e-5 and max_param_diff < 1e-4 and abs(t1 - t2) < 1e-5, (name, out[name])





@pytest.mark.parametrize('backend,mode', [('jax', 'sparse'), ('torch', 'dense'), ('jax', 'bayes')])
def test_cli_json(backend, mode):
    "`recsys-nb mf ... --json` prints the figures as the last line of stdout."
    with tempfile.TemporaryDirectory() as d:
        hist = Path(d) / 'h.csv'
        cmd = [sys.executable, '-m', 'recsys_nb.cli', 'mf', '--data', str(default_dataset('tiny')), '--backend', backend, '--mode', mode,
               '--k', '4', '--max-epochs', '6', '--no-progress', '--json', '--history', str(hist)]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
        assert res.returncode == 0, res.stderr[-3000:]
        out = json.loads(res.stdout)
        assert {'train_rmse', 'test_rmse', 'epochs', 'seconds', 'seconds_per_epoch'} <= set(out)
        assert out['backend'] == backend and out['mode'] == mode and out['epochs'] == 6
        assert out['config']['k'] == 4 and len(hist.read_text().splitlines()) == 7


def test_cli_rejects_bad_option():
    cmd = [sys.executable, '-m', 'recsys_nb.cli', 'mf', '--data', str(default_dataset('tiny')), '--reg', 'l1', '--no-progress']
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert res.returncode == 2 and "--reg: invalid choice: 'l1'" in res.stderr and 'Traceback' not in res.stderr
    cmd[-3:-1] = ['--lr', '0']                           # a value argparse accepts, refused by the configuration
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert res.returncode != 0 and 'MFConfig.lr' in res.stderr and 'Traceback' not in res.stderr


def test_config_validation():
    with pytest.raises(ValueError, match='MFConfig.lr'): mf_config('sparse', lr=0.0)
    with pytest.raises(ValueError, match='val_frac'): mf_config('sparse', val_frac=1.0)
    with pytest.raises(TypeError, match='unknown'): mf_config('sparse', learning_rate=0.1)
    with pytest.raises(ValueError, match='n_devices'): mf_torch.TorchMFTrainer(mf_config('sparse', n_devices=2), MFData(2, 2, ([0], [1], [3.0])))


def test_resume_refuses_other_settings_or_data(tiny, tmp_path):
    "A checkpoint is resumed only by the run that wrote it: the same settings (the epoch limit may grow) and data."
    cfg = mf_config('sparse', k=4, tol=0, max_epochs=6, progress=False, checkpoint_dir=str(tmp_path), checkpoint_every=2)
    train_mf(cfg, tiny, 'torch', callback=_interrupt_at(3))
    with pytest.raises(ValueError, match=r'other settings or data \(lmd\)'): train_mf(replace(cfg, lmd=0.5), tiny, 'torch')
    other = MFData(tiny.n_users, tiny.n_movies, tuple(a[:-10] for a in tiny.train), tiny.test, tiny.val)
    with pytest.raises(ValueError, match=r'other settings or data \(data\)'): train_mf(cfg, other, 'torch')
    run = train_mf(replace(cfg, max_epochs=8), tiny, 'torch')
    assert run.info['resumed_from'] == 3 and len(run.history) == 8      # saved when interrupted
    assert all(p.suffix == '.npz' for p in tmp_path.iterdir())

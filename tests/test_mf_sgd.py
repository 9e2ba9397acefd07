"""Matrix factorisation by block-parallel SGD: the kernel against a plain loop, the schedule, threads, training, state."""
from dataclasses import replace

import numba
import numpy as np
import pytest

from recsys_nb.data import load_netflix
from recsys_nb.synth import synth_netflix
from recsys_nb.mf import MFData, MODES, MODE_DEFAULTS, run_trainer, train_mf
from recsys_nb.mf_sgd import (SGD_DEFAULTS, SGDMFTrainer, block_layout, diagonal_order, schedule_blocks, sgd_config,
                              sgd_epoch, sgd_reference, visit_order)



@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    return MFData.from_rating_data(load_netflix(synth_netflix(tmp_path_factory.mktemp('tiny'), 'tiny', seed=0)), val_frac=0.1)


def params(data, k=8, biased=True, adaptive=True, dtype=np.float32, seed=0):
    "Random factors, zero biases, unit rate sums: what `sgd_epoch` and `sgd_reference` take."
    rng, m, n = np.random.default_rng(seed), data.n_users, data.n_movies
    return dict(U=rng.normal(0, 0.1, (m, k)).astype(dtype), V=rng.normal(0, 0.1, (n, k)).astype(dtype),
                bu=np.zeros(m if biased else 0, dtype), bi=np.zeros(n if biased else 0, dtype),
                Gu=np.ones(m if adaptive else 0, dtype), Gv=np.ones(n if adaptive else 0, dtype))


def copy(p): return {x: a.copy() for x, a in p.items()}


def max_diff(a, b):
    "Largest difference over the arrays of two parameter dicts, relative for entries above 1 (the rate sums grow to ~100)."
    return max(float((np.abs(a[x] - b[x]) / np.maximum(1, np.abs(b[x]))).max()) for x in a if len(a[x]))


@pytest.mark.parametrize('biased,adaptive', [(True, True), (True, False), (False, True)])
def test_one_thread_one_block_equals_loop(tiny, biased, adaptive):
    "One epoch, one thread, one block (the stored order) equals the plain Python loop to 1e-5."
    p0, mu = params(tiny, biased=biased, adaptive=adaptive), (tiny.mu if biased else 0.0)
    b = block_layout(*tiny.train, tiny.n_users, tiny.n_movies, 1)
    for x, y in zip(tiny.train, (b.u, b.i, b.r)): assert np.array_equal(x, y)      # one block: the order is kept
    fast, slow = copy(p0), copy(p0)
    sse, visits = sgd_epoch(fast, b, np.zeros(1, np.int64), 0.05, 0.02, mu, threads=1)
    ref = sgd_reference(slow, *tiny.train, 0.05, 0.02, mu)
    assert visits.tolist() == [1]
    assert abs(sse.sum() - ref) < 1e-4 * ref
    assert max_diff(fast, slow) < 1e-5


@pytest.mark.parametrize('n_bands', [2, 3, 5])
def test_schedule_touches_every_rating_once(tiny, n_bands):
    "The layout is a permutation of the ratings; each epoch's schedule runs every block once, no two sharing a band."
    b = block_layout(*tiny.train, tiny.n_users, tiny.n_movies, n_bands)
    key = lambda u, i: u.astype(np.int64) * tiny.n_movies + i
    assert np.array_equal(np.sort(key(b.u, b.i)), np.sort(key(*tiny.train[:2])))
    assert (b.user_band[b.u] * n_bands + b.movie_band[b.i] == np.repeat(np.arange(n_bands ** 2), np.diff(b.starts))).all()
    p = params(tiny)
    for epoch in range(3):
        order = diagonal_order(n_bands, 7, epoch)
        steps = schedule_blocks(order)
        for step in steps:
            assert sorted(step[:, 0]) == list(range(n_bands)) and sorted(step[:, 1]) == list(range(n_bands))
        assert sorted(map(tuple, steps.reshape(-1, 2).tolist())) == [(x, y) for x in range(n_bands) for y in range(n_bands)]
        assert np.array_equal(np.sort(visit_order(b, order)), np.arange(tiny.n_train))
        _, visits = sgd_epoch(p, b, order, 0.05, 0.02, tiny.mu)
        assert (visits == 1).all()


def test_parallel_equals_sequential(tiny):
    "Blocks of a diagonal are independent: all threads give bit-identical results to one thread, and equal the loop."
    b = block_layout(*tiny.train, tiny.n_users, tiny.n_movies, 4)
    p1, p2, p3 = params(tiny), params(tiny), params(tiny)
    for epoch in range(3):
        order = diagonal_order(4, 0, epoch)
        s1, _ = sgd_epoch(p1, b, order, 0.05, 0.02, tiny.mu, threads=1)
        s2, _ = sgd_epoch(p2, b, order, 0.05, 0.02, tiny.mu, threads=numba.config.NUMBA_NUM_THREADS)
        assert np.array_equal(s1, s2)
        idx = visit_order(b, order)
        sgd_reference(p3, b.u[idx], b.i[idx], b.r[idx], 0.05, 0.02, tiny.mu)
    for x in p1: assert np.array_equal(p1[x], p2[x]), x
    assert max_diff(p1, p3) < 1e-4


def test_trainer_threads_do_not_change_the_run(tiny):
    cfg = sgd_config(k=8, max_epochs=4, tol=0, progress=False)
    a = train_mf(cfg, tiny, threads=1)
    b = train_mf(cfg, tiny, threads=numba.config.NUMBA_NUM_THREADS)
    assert a.history.equals(b.history)
    for x, v in a.trainer.get_state().items(): assert np.array_equal(v, b.trainer.get_state()[x]), x


def test_training_decreases_rmse(tiny):
    cfg = sgd_config(k=8, max_epochs=10, tol=0, patience=10, progress=False)
    before = SGDMFTrainer(cfg, tiny)
    start = {x: before.rmse(x) for x in ('train', 'val', 'test')}
    run = train_mf(cfg, tiny)
    h = run.history
    assert h.train_rmse.is_monotonic_decreasing and h.loss.is_monotonic_decreasing
    for x, v in start.items(): assert run.metrics[f'{x}_rmse'] < v - 0.05, x
    t = run.trainer
    pred = t.predict(*tiny.test[:2])
    assert abs(np.sqrt(np.mean((pred - tiny.test[2]) ** 2)) - run.test_rmse) < 1e-5
    assert pred.min() >= 1 and pred.max() <= 5                   # clipped to the training range


def test_state_round_trip_resumes_identically(tiny):
    cfg = sgd_config(k=8, progress=False)
    a = SGDMFTrainer(cfg, tiny)
    for e in range(3): a.step(e)
    saved = a.get_state()
    rest = [a.step(e) for e in range(3, 6)]
    b = SGDMFTrainer(cfg, tiny).set_state(saved)
    assert [b.step(e) for e in range(3, 6)] == rest
    for x, v in a.get_state().items(): assert np.array_equal(v, b.get_state()[x]), x
    saved['U'][:] = 0                                               # a copy, not a view of the live arrays
    assert np.abs(a.get_state()['U']).max() > 0


def test_checkpoint_resume_equals_one_run(tiny, tmp_path):
    "3 epochs, then a resume from the checkpoint to 6, equals 6 epochs in one go (fit's checkpoints, arrays + JSON)."
    cfg = sgd_config(k=8, tol=0, patience=100, progress=False)
    whole = run_trainer(SGDMFTrainer(replace(cfg, max_epochs=6), tiny))
    ck = dict(checkpoint_dir=str(tmp_path), checkpoint_every=1)
    run_trainer(SGDMFTrainer(replace(cfg, max_epochs=3, **ck), tiny))
    resumed = run_trainer(SGDMFTrainer(replace(cfg, max_epochs=6, **ck), tiny))
    assert resumed.info['resumed_from'] == 3
    cols = ['loss', 'train_rmse', 'val_rmse', 'test_rmse']
    assert np.array_equal(resumed.history[cols].to_numpy(), whole.history[cols].to_numpy())
    for x, v in whole.trainer.get_state().items(): assert np.array_equal(v, resumed.trainer.get_state()[x]), x


def test_refusals(tiny):
    cfg = sgd_config(k=8, progress=False)
    for bad, msg in ((dict(reg='decay'), "reg='l2'"), (dict(optimizer='adam'), "optimizer='sgd'"), (dict(momentum=0.9), 'momentum=0'),
                     (dict(device='cuda'), 'device=')):
        with pytest.raises(ValueError, match=msg): SGDMFTrainer(replace(cfg, **bad), tiny)
    saved = SGDMFTrainer(cfg, tiny).get_state()
    with pytest.raises(ValueError, match='another run'): SGDMFTrainer(cfg, tiny, n_bands=3).set_state(saved)
    with pytest.raises(ValueError, match='another run'): SGDMFTrainer(cfg, tiny, adaptive=False).set_state(saved)
    with pytest.raises(ValueError, match='n_bands'): block_layout(*tiny.train, tiny.n_users, tiny.n_movies, 0)


def test_float64(tiny):
    "The kernels take float64 parameters too, and then agree with the loop far more closely."
    p0 = params(tiny, dtype=np.float64)
    b = block_layout(tiny.train[0], tiny.train[1], tiny.train[2].astype(np.float64), tiny.n_users, tiny.n_movies, 1)
    fast, slow = copy(p0), copy(p0)
    sgd_epoch(fast, b, np.zeros(1, np.int64), 0.05, 0.02, tiny.mu)
    sgd_reference(slow, b.u, b.i, b.r, 0.05, 0.02, tiny.mu)
    assert max_diff(fast, slow) < 1e-10
    run = train_mf(sgd_config(k=8, max_epochs=2, dtype='float64', progress=False), tiny)
    assert run.trainer.factors()['U'].dtype == np.float64


def test_registered_mode(tiny):
    "`mf` lists mode 'sgd', its defaults are SGD_DEFAULTS, and `MF('sgd')` trains with this trainer."
    assert 'sgd' in MODES
    from recsys_nb.mf import MF, mf_config, train_mf
    assert MODE_DEFAULTS['sgd'] == SGD_DEFAULTS
    assert sgd_config() == mf_config('sgd')
    for backend in ('jax', 'torch'):
        run = train_mf(sgd_config(k=8, max_epochs=3, progress=False), tiny, backend)
        assert run.backend == 'numba' and run.config.mode == 'sgd'
    import pandas as pd
    df = pd.DataFrame({'user': tiny.train[0], 'item': tiny.train[1], 'rating': tiny.train[2]})
    m = MF('sgd', k=8, max_epochs=3, progress=False).fit(df)
    assert m.run_.backend == 'numba' and np.isfinite(m.predict(df.user[:5], df.item[:5])).all()
    assert m.test(df)['rmse'] < 1.2

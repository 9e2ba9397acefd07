"""Resume equivalence and interrupt behaviour of `recsys_nb.train.fit`."""
import numpy as np
import pytest

from recsys_nb.train import Checkpointer, EarlyStopping, History, fit, module_state, load_module_state, seed_everything


def np_problem(noise=0.05):
    "A deterministic least-squares problem whose step also draws from NumPy's *global* generator."
    rng = np.random.default_rng(0)
    X, w_true = rng.normal(size=(60, 8)), rng.normal(size=8)
    y = X @ w_true + rng.normal(size=60)
    Xv, yv = X[40:], y[40:]
    X, y = X[:40], y[:40]

    def step(state, epoch):
        w = state['w']
        g = 2 * X.T @ (X @ w - y) / len(y)
        w = w - 0.05 * g + noise * np.random.normal(size=w.shape)  # global RNG: must be restored on resume
        return {'w': w, 'n': state['n'] + 1}, {'loss': float(np.mean((X @ w - y) ** 2))}

    def evaluate(state, epoch):
        return {'val_rmse': float(np.sqrt(np.mean((Xv @ state['w'] - yv) ** 2)))}

    return step, evaluate, {'w': np.zeros(8), 'n': 0}


def interrupting(step, at, before=True):
    "Wrap `step` so that epoch `at` raises KeyboardInterrupt (after consuming random numbers when before=False)."
    def f(state, epoch):
        if epoch == at:
            if not before: np.random.normal(size=100)
            raise KeyboardInterrupt
        return step(state, epoch)
    return f


def reference(epochs=40, **kw):
    step, evaluate, s0 = np_problem()
    seed_everything(0, torch=False)
    return fit(step, s0, epochs, evaluate=evaluate, progress=False, **kw)


@pytest.mark.parametrize('every', [1, 3, 7])
@pytest.mark.parametrize('at', [1, 5, 12])
@pytest.mark.parametrize('before', [True, False])
def test_resume_is_exact(tmp_path, every, at, before):
    ref_state, ref_hist, ref_info = reference()
    step, evaluate, s0 = np_problem()
    seed_everything(0, torch=False)
    ck = Checkpointer(tmp_path, every=every)
    s1, h1, i1 = fit(interrupting(step, at, before), s0, 40, evaluate=evaluate, checkpointer=ck, progress=False)
    assert i1['stopped'] == 'interrupted' and i1['epoch'] == at and len(h1) == at
    assert s1['n'] == at                                   # the last completed epoch's state is returned
    np.random.normal(size=1000)                             # anything may happen to the generators in between
    seed_everything(123, torch=False)
    s2, h2, i2 = fit(step, np_problem()[2], 40, evaluate=evaluate, checkpointer=ck, progress=False)
    assert i2['resumed_from'] == at and i2['epochs_run'] == 40 - at and i2['stopped'] == 'max_epochs'
    np.testing.assert_array_equal(s2['w'], ref_state['w'])
    assert s2['n'] == 40 and h2 == ref_hist


def test_resume_with_early_stopping_and_tol(tmp_path):
    kw = dict(tol=1e-12, early_stopping=EarlyStopping('val_rmse', patience=3))
    step, evaluate, s0 = np_problem(noise=0.3)
    seed_everything(0, torch=False)
    ref_state, ref_hist, ref_info = fit(step, s0, 200, evaluate=evaluate, progress=False,
                                        tol=1e-12, early_stopping=EarlyStopping('val_rmse', patience=3))
    assert ref_info['stopped'] == 'early_stopping'
    at = ref_info['epoch'] - 2                              # interrupt while the patience counter is running
    seed_everything(0, torch=False)
    ck = Checkpointer(tmp_path, every=2)
    fit(interrupting(step, at), s0, 200, evaluate=evaluate, checkpointer=ck, progress=False,
        tol=1e-12, early_stopping=EarlyStopping('val_rmse', patience=3))
    s2, h2, i2 = fit(step, np_problem()[2], 200, evaluate=evaluate, checkpointer=ck, progress=False,
                     tol=1e-12, early_stopping=EarlyStopping('val_rmse', patience=3))
    assert i2['stopped'] == 'early_stopping' and h2 == ref_hist
    assert i2['best_epoch'] == ref_info['best_epoch']
    np.testing.assert_array_equal(s2['w'], ref_state['w'])  # the restored best state
    # a finished run is not trained again
    s3, h3, i3 = fit(step, np_problem()[2], 200, evaluate=evaluate, checkpointer=ck, progress=False,
                     tol=1e-12, early_stopping=EarlyStopping('val_rmse', patience=3))
    assert i3['stopped'] == 'finished_before' and i3['epochs_run'] == 0 and h3 == ref_hist
    np.testing.assert_array_equal(s3['w'], ref_state['w'])


def test_extending_a_finished_run(tmp_path):
    ref_state, ref_hist, _ = reference(30)
    step, evaluate, s0 = np_problem()
    seed_everything(0, torch=False)
    ck = Checkpointer(tmp_path, every=4)
    fit(step, s0, 20, evaluate=evaluate, checkpointer=ck, progress=False)
    s2, h2, i2 = fit(step, np_problem()[2], 30, evaluate=evaluate, checkpointer=ck, progress=False)
    assert i2['resumed_from'] == 20 and i2['epochs_run'] == 10 and h2 == ref_hist
    np.testing.assert_array_equal(s2['w'], ref_state['w'])


def test_interrupt_raise_mode_saves_then_raises(tmp_path):
    step, evaluate, s0 = np_problem()
    ck = Checkpointer(tmp_path, every=100)
    with pytest.raises(KeyboardInterrupt):
        fit(interrupting(step, 6), s0, 40, checkpointer=ck, progress=False, on_interrupt='raise')
    c = ck.load()
    assert c['epoch'] == 6 and c['state']['n'] == 6 and len(History.from_dict(c['history'])) == 6


def test_interrupt_during_evaluate_keeps_last_completed_epoch(tmp_path):
    step, evaluate, s0 = np_problem()
    def bad_eval(state, epoch):
        if epoch == 4: raise KeyboardInterrupt
        return evaluate(state, epoch)
    ck = Checkpointer(tmp_path, every=100)
    s, h, info = fit(step, s0, 40, evaluate=bad_eval, checkpointer=ck, progress=False)
    assert info['stopped'] == 'interrupted' and s['n'] == 4 and len(h) == 4 and ck.load()['state']['n'] == 4


def test_interrupt_without_checkpointer_returns():
    step, evaluate, s0 = np_problem()
    s, h, info = fit(interrupting(step, 3), s0, 10, progress=False)
    assert info['stopped'] == 'interrupted' and len(h) == 3 and s['n'] == 3 and info['checkpoint'] is None


def test_jax_resume_is_exact(tmp_path):
    jax = pytest.importorskip('jax')
    optax = pytest.importorskip('optax')
    import jax.numpy as jnp
    rng = np.random.default_rng(1)
    X, y = jnp.asarray(rng.normal(size=(64, 4))), jnp.asarray(rng.normal(size=64))
    tx = optax.adam(0.05)

    @jax.jit
    def jstep(state):
        w, opt_state, key = state
        key, sub = jax.random.split(key)
        idx = jax.random.choice(sub, 64, (16,), replace=False)          # minibatch drawn from the state's key
        loss, g = jax.value_and_grad(lambda w: jnp.mean((X[idx] @ w - y[idx]) ** 2))(w)
        upd, opt_state = tx.update(g, opt_state, w)
        return (optax.apply_updates(w, upd), opt_state, key), loss

    def step(state, epoch):
        state, loss = jstep(state)
        return state, {'loss': loss}

    def init():
        w = jnp.zeros(4)
        return (w, tx.init(w), jax.random.PRNGKey(0))

    ref, ref_hist, _ = fit(step, init(), 25, progress=False)
    ck = Checkpointer(tmp_path, every=4)
    fit(interrupting(step, 10), init(), 25, checkpointer=ck, progress=False)
    s2, h2, i2 = fit(step, init(), 25, checkpointer=ck, progress=False)
    assert i2['resumed_from'] == 10 and h2 == ref_hist
    for a, b in zip(jax.tree_util.tree_leaves(s2), jax.tree_util.tree_leaves(ref)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_torch_resume_is_exact(tmp_path):
    torch = pytest.importorskip('torch')
    def init():
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
        return net, torch.optim.Adam(net.parameters(), lr=0.01)
    X, y = torch.randn(64, 4, generator=torch.Generator().manual_seed(1)), torch.randn(64, generator=torch.Generator().manual_seed(2))

    def step(state, epoch):
        net, opt = state
        idx = torch.randperm(64)[:16]                       # global torch RNG: restored on resume
        opt.zero_grad()
        loss = torch.mean((net(X[idx]).squeeze(1) - y[idx]) ** 2)
        loss.backward(); opt.step()
        return state, {'loss': loss.detach()}

    kw = dict(get_state=module_state, set_state=load_module_state, progress=False)
    ref, ref_hist, _ = fit(step, init(), 30, **kw)
    ck = Checkpointer(tmp_path, every=1)
    fit(interrupting(step, 12), init(), 30, checkpointer=ck, **kw)
    torch.manual_seed(99)
    s2, h2, i2 = fit(step, init(), 30, checkpointer=ck, **kw)
    assert i2['resumed_from'] == 12 and h2 == ref_hist
    for a, b in zip(s2[0].parameters(), ref[0].parameters()):
        assert torch.equal(a, b)


def test_checkpoint_is_atomic(tmp_path, monkeypatch):
    ck = Checkpointer(tmp_path)
    ck.save(1, {'w': np.ones(2)})
    import recsys_nb.train as train
    def boom(*a, **k): raise OSError('disk full')
    monkeypatch.setattr(train, 'save_tree', boom)
    with pytest.raises(OSError):
        ck.save(2, {'w': np.zeros(2)})
    assert [p.name for p in tmp_path.iterdir()] == ['ckpt-00000001.npz']   # no partial file, old one intact
    assert ck.load()['epoch'] == 1


def test_callback_and_validation():
    step, evaluate, s0 = np_problem()
    s, h, info = fit(step, s0, 40, progress=False, callback=lambda e, m, s: e == 4)
    assert info['stopped'] == 'callback' and len(h) == 5
    with pytest.raises(KeyError, match='val_rmse'):
        fit(step, s0, 5, progress=False, early_stopping=EarlyStopping('val_rmse'))
    with pytest.raises(ValueError, match='on_interrupt'):
        fit(step, s0, 5, on_interrupt='ignore')


@pytest.mark.parametrize('damage', ['truncate', 'garbage', 'empty'])
def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(tmp_path, damage):
    "A corrupt or truncated newest checkpoint is skipped with a warning; the run resumes from the previous one and ends as an uninterrupted run."
    ref_state, ref_hist, _ = reference()
    step, evaluate, s0 = np_problem()
    seed_everything(0, torch=False)
    ck = Checkpointer(tmp_path, every=4)
    fit(interrupting(step, 10), s0, 40, evaluate=evaluate, checkpointer=ck, progress=False)
    newest, before = ck.list()[-1], ck.list()[-2]
    raw = newest.read_bytes()
    newest.write_bytes({'truncate': raw[:len(raw) // 2], 'garbage': b'not a zip file' * 10, 'empty': b''}[damage])
    (tmp_path / f'.{newest.name}.abc123.tmp').write_bytes(b'half a write')          # left by a killed save
    with pytest.warns(UserWarning, match='unreadable checkpoint'):
        s2, h2, i2 = fit(step, np_problem()[2], 40, evaluate=evaluate, checkpointer=Checkpointer(tmp_path, every=4), progress=False)
    assert i2['resumed_from'] == int(before.stem.split('-')[1]) == 8
    np.testing.assert_array_equal(s2['w'], ref_state['w'])
    assert h2 == ref_hist and not list(tmp_path.glob('.*.tmp'))


def test_no_readable_checkpoint_is_one_error(tmp_path):
    ck = Checkpointer(tmp_path)
    ck.path(3).write_bytes(b'junk')
    with pytest.warns(UserWarning), pytest.raises(ValueError, match='no readable checkpoint.*--fresh'): ck.load()

"Bayesian SVD++ and timeSVD++ (Gibbs; MF modes svdpp, svdpp_flipped, timesvdpp_flipped) and MF's neural mode of `recsys_nb.accuracy`: the sampler against closed forms, tiny fits, seeds, resumes; the u1…u5 splits."
from pathlib import Path
import numpy as np, pandas as pd, pytest, scipy.sparse as sp
import json, subprocess, sys
from recsys_nb import MF
from recsys_nb.accuracy import _sample_rows, _sample_implicit, _gram, sample_group_biases
from recsys_nb.mf import MFData, mf_config, train_mf
from recsys_nb.data import read_ratings
from recsys_nb.splits import movielens_u_split, write_movielens_u_splits

ML100K = Path(__file__).parents[2] / 'shared/data/ml-100k'

@pytest.mark.skipif(not (ML100K / 'u.data').exists(), reason='MovieLens 100K (shared/data/ml-100k/u.data) is not on this machine')
def test_u_splits_are_consecutive_blocks_of_20000_lines():
    df = read_ratings(ML100K / 'u.data')
    cols = ['user_id', 'movie_id', 'rating']
    for fold in range(1, 6):
        base, test = movielens_u_split(df, fold)
        assert (len(base), len(test)) == (80_000, 20_000)
        block = df.iloc[(fold - 1) * 20_000:fold * 20_000].sort_values(['user_id', 'movie_id'], kind='stable')
        np.testing.assert_array_equal(test[cols].to_numpy(), block[cols].to_numpy())

def test_row_conditional_matches_closed_form():
    g = np.random.default_rng(0)
    d, X, mu0, Lam0, alpha = 3, g.normal(size=(6, 3)), g.normal(size=3), 2 * np.eye(3), 1.7
    ptr, idx, t = np.array([0, 4]), np.array([0, 2, 3, 5]), g.normal(size=4)
    P = Lam0 + alpha * X[idx].T @ X[idx]
    mean = np.linalg.solve(P, Lam0 @ mu0 + alpha * X[idx].T @ t)
    draws = []
    for z in np.vstack([np.zeros(d), np.eye(d)]):
        out = np.zeros((1, d)); _sample_rows(ptr, idx, t, X, mu0, Lam0, alpha, z[None], out); draws.append(out[0])
    np.testing.assert_allclose(draws[0], mean, atol=1e-12)
    D = np.array(draws[1:]) - mean
    np.testing.assert_allclose(D.T @ D, np.linalg.inv(P), atol=1e-12)     # covariance L⁻ᵀL⁻¹ = P⁻¹

def test_implicit_sweep_matches_naive_gibbs():
    g = np.random.default_rng(1)
    nu, ni, k = 5, 4, 2
    N = (g.random((nu, ni)) < 0.6).astype(float); N[:, 0] = 1
    ru, ri = np.nonzero(N * (g.random((nu, ni)) < 0.7)); r, off = g.normal(size=len(ru)), g.normal(size=len(ru))
    c = 1 / np.sqrt(np.maximum(N.sum(1), 1))
    Pu, Qt, Y0, Z = (g.normal(size=s) for s in [(nu, k), (ni, k), (ni, k), (ni, k)])
    mu_y, Lam_y, alpha = g.normal(size=k), 1.5 * np.eye(k), 2.0
    ref = Y0.copy()
    for j in range(ni):                                          # every conditional rebuilt from all residuals
        ybar = c[:, None] * (N @ ref) - c[:, None] * np.outer(N[:, j], ref[j])
        e = r - off - np.einsum('ij,ij->i', (Pu + ybar)[ru], Qt[ri])
        x = (c * N[:, j])[ru][:, None] * Qt[ri]
        P = Lam_y + alpha * x.T @ x
        ref[j] = np.linalg.solve(P, Lam_y @ mu_y + alpha * x.T @ e) + np.linalg.solve(np.linalg.cholesky(P).T, Z[j])
    ybar = c[:, None] * (N @ Y0)
    S, gg = _gram(np.r_[0, np.cumsum(np.bincount(ru, minlength=nu))], ri.astype(np.int64),
                  r - off - np.einsum('ij,ij->i', (Pu + ybar)[ru], Qt[ri]), Qt)
    Nt, Y = sp.csr_matrix(N.T), Y0.copy()
    _sample_implicit(Nt.indptr.astype(np.int64), Nt.indices.astype(np.int64), c, S, gg, Y, ybar, mu_y, Lam_y, alpha, Z)
    np.testing.assert_allclose(Y, ref, atol=1e-10)

def tiny(seed=0, nu=40, ni=30, n=500):
    g = np.random.default_rng(seed)
    u, i = g.integers(0, nu, n), g.integers(0, ni, n)
    r = np.clip(np.round(3 + np.einsum('ij,ij->i', g.normal(size=(nu, 2))[u], g.normal(size=(ni, 2))[i])), 1, 5)
    df = pd.DataFrame({'user': u, 'item': i, 'rating': r}).drop_duplicates(['user', 'item'])
    return df.iloc[:400], df.iloc[400:]

def svdpp(mode, backend='torch', seed=1, **kw):
    return MF(mode, backend, k=3, max_epochs=8, burn_in=3, seed=seed, progress=False, **kw)

@pytest.mark.parametrize('mode', ['svdpp', 'svdpp_flipped'])
def test_svdpp_modes_fit_predict_and_repeat(mode, tmp_path):
    tr, te = tiny()
    pairs = te[['user', 'item']]
    m = svdpp(mode).fit(tr, implicit_pairs=pairs)
    p = m.predict(te.user, te.item)
    assert len(m.samples_) == 5 and ((p >= 1) & (p <= 5)).all()
    np.testing.assert_array_equal(svdpp(mode).fit(tr, implicit_pairs=pairs).predict(te.user, te.item), p)
    np.testing.assert_array_equal(svdpp(mode, 'jax').fit(tr, implicit_pairs=pairs).predict(te.user, te.item), p)  # one sampler
    assert not np.array_equal(svdpp(mode, seed=2).fit(tr, implicit_pairs=pairs).predict(te.user, te.item), p)
    assert not np.array_equal(svdpp(mode).fit(tr).predict(te.user, te.item), p)        # the implicit pairs matter
    np.testing.assert_array_equal(MF.load(m.save(tmp_path / 'm')).predict(te.user, te.item), p)
    assert m.run_.summary()['mode'] == mode and m.run_.backend == 'numba'

def test_flipped_differs_from_plain_and_test_pairs_only_with_implicit_test():
    tr, te = tiny()
    plain, flipped = (svdpp(m).fit(tr, eval_ratings=te) for m in ('svdpp', 'svdpp_flipped'))
    assert not np.array_equal(plain.predict(te.user, te.item), flipped.predict(te.user, te.item))
    with_test = svdpp('svdpp_flipped', implicit_test=True).fit(tr, eval_ratings=te)
    as_pairs = svdpp('svdpp_flipped').fit(tr, eval_ratings=te, implicit_pairs=te[['user', 'item']])
    np.testing.assert_array_equal(with_test.predict(te.user, te.item), as_pairs.predict(te.user, te.item))
    assert not np.array_equal(with_test.predict(te.user, te.item), flipped.predict(te.user, te.item))

def _codes():
    tr, te = tiny()
    u, i = pd.factorize(pd.concat([tr.user, te.user]))[0], pd.factorize(pd.concat([tr.item, te.item]))[0]
    n = len(tr)
    return MFData(int(u.max()) + 1, int(i.max()) + 1, (u[:n], i[:n], tr.rating.to_numpy()), (u[n:], i[n:], te.rating.to_numpy()))

def test_svdpp_resume_repeats_the_uninterrupted_chain(tmp_path):
    "A run stopped after 5 sweeps and resumed to 9 equals the 9-sweep run: the checkpoint is the chain's whole state."
    data = _codes()
    cfg = lambda n, d=None: mf_config('svdpp_flipped', k=3, max_epochs=n, burn_in=3, seed=4, progress=False,
                                      checkpoint_dir=d, checkpoint_every=1, implicit_test=True)
    full = train_mf(cfg(9), data)
    train_mf(cfg(5, str(tmp_path / 'ck')), data)
    resumed = train_mf(cfg(9, str(tmp_path / 'ck')), data)
    assert resumed.info['resumed_from'] == 5
    np.testing.assert_allclose(resumed.trainer.predict(*data.test[:2]), full.trainer.predict(*data.test[:2]), rtol=0, atol=1e-12)
    assert resumed.metrics == full.metrics
    other = mf_config('svdpp_flipped', k=3, max_epochs=9, burn_in=3, seed=4, progress=False, checkpoint_dir=str(tmp_path / 'ck'))
    with pytest.raises(ValueError, match='implicit_test'): train_mf(other, data)          # another setting: refused

def test_u_splits_as_files_and_the_command(tmp_path):
    "The split function's files read back as the splits, and `recsys-nb mf --mode svdpp_flipped --implicit-test` runs on them."
    g = np.random.default_rng(0)
    n = 1000
    pd.DataFrame({'u': g.integers(1, 60, n), 'i': g.integers(1, 40, n), 'r': g.integers(1, 6, n), 't': 880_000_000 + np.arange(n)}
                 ).drop_duplicates(['u', 'i']).to_csv(tmp_path / 'u.data', sep='\t', header=False, index=False)
    paths = write_movielens_u_splits(tmp_path / 'u.data', tmp_path / 's', [1])
    base, test = movielens_u_split(read_ratings(tmp_path / 'u.data'), 1)
    for p, want in zip(paths, (base, test)): assert read_ratings(p).to_numpy().tolist() == want.to_numpy().tolist()
    run = lambda *args: subprocess.run([sys.executable, '-m', 'recsys_nb.cli', 'mf', '--train', str(paths[0]), '--test', str(paths[1]),
                                        '--k', '3', '--max-epochs', '6', *args], capture_output=True, text=True, timeout=300)
    for mode, args in [('svdpp_flipped', ['--implicit-test', '--burn-in', '2']),
                       ('timesvdpp_flipped', ['--implicit-test', '--burn-in', '2', '--time-terms', 'day,bin']),   # u.data's dates
                       ('neural', ['--output', 'sigmoid'])]:
        out = run('--mode', mode, *args, '--json')
        assert out.returncode == 0, out.stderr[-2000:]
        res = json.loads(out.stdout)
        assert res['mode'] == mode and 0.5 < res['test_rmse'] < 2
        assert res['config']['implicit_test'] == (mode != 'neural')
    assert res['config']['output'] == 'sigmoid'
    out = run('--mode', 'neural', '--backend', 'jax')
    assert out.returncode == 2 and out.stderr.strip().splitlines() == ["recsys-nb mf: error: mode 'neural' trains with PyTorch only: use backend='torch'"]

@pytest.mark.parametrize('kw', [{}, dict(output='sigmoid'), dict(gamma=0.0, lmd=5.0), dict(head='mlp', hidden=4)])
def test_neural_mode_fits_predicts_and_repeats(kw, tmp_path):
    tr, te = tiny()
    make = lambda: MF('neural', k=3, max_epochs=20, lr=0.05, seed=3, progress=False, **kw).fit(tr, eval_ratings=te)
    m = make()
    p = m.predict(te.user, te.item)
    assert ((p >= 1) & (p <= 5)).all()
    assert abs(m.test(te)['rmse'] - m.run_.test_rmse) < 1e-9          # NumPy's forward pass = the PyTorch trainer's
    np.testing.assert_array_equal(make().predict(te.user, te.item), p)
    np.testing.assert_array_equal(MF.load(m.save(tmp_path / 'm')).predict(te.user, te.item), p)
    from recsys_nb.mf import _neural_pairs, _neural_rows                  # recommend's products = the per-pair forward pass
    u, ni = np.array([0, 5, len(m.users_)]), len(m.items_)                 # the last user is unknown: zero factors and bias
    rows = _neural_rows(m.factors_, m.config, m.rating_range_, u, block=2)
    pairs = _neural_pairs(m.factors_, m.config, m.rating_range_, np.repeat(u, ni + 1), np.tile(np.arange(ni + 1), len(u))).reshape(len(u), ni + 1)
    np.testing.assert_allclose(rows, pairs[:, :ni], rtol=0, atol=1e-12)

def test_neural_mode_starts_from_given_parameters():
    "`init` (another run's `factors()`) is where training starts: zero epochs of Adam leave it unchanged."
    data = _codes()
    first = train_mf(mf_config('neural', k=3, max_epochs=5, progress=False), data)
    again = train_mf(mf_config('neural', k=3, max_epochs=1, lr=1e-12, seed=7, progress=False), data, init=first.trainer.factors())
    for n, v in first.trainer.factors().items(): np.testing.assert_allclose(again.trainer.factors()[n], v, atol=1e-9)
    with pytest.raises(ValueError, match='has shape'): train_mf(mf_config('neural', k=4, max_epochs=1, progress=False), data, init=first.trainer.factors())

def test_neural_mode_options_change_the_model():
    tr, te = tiny()
    fit = lambda **kw: MF('neural', k=3, max_epochs=20, lr=0.05, seed=3, progress=False, **kw).fit(tr).predict(te.user, te.item)
    base = fit()
    for kw in (dict(output='sigmoid'), dict(gamma=0.0), dict(head='mlp', hidden=4), dict(lmd=0.0)):
        assert not np.allclose(fit(**kw), base), kw

def _dated(seed=0, nu=60, ni=40, n=1000, days=12):
    "A planted rank-2 set whose ratings move with a mood per user and day."
    g = np.random.default_rng(seed)
    u, i, day = g.integers(0, nu, n), g.integers(0, ni, n), g.integers(0, days, n)
    r = np.clip(np.round(3 + np.einsum('ij,ij->i', g.normal(size=(nu, 2))[u], g.normal(size=(ni, 2))[i]) + g.normal(0, 0.8, (nu, days))[u, day]), 1, 5)
    df = pd.DataFrame({'user': u, 'item': i, 'rating': r, 'timestamp': 883_008_000 + day * 86_400 + g.integers(0, 86_400, n)})
    df = df.drop_duplicates(['user', 'item'])
    return df.iloc[:650], df.iloc[650:]

@pytest.mark.parametrize('terms', ['day', 'day,bin,drift'])
def test_time_mode_finds_daily_moods_and_predicts_as_the_chain(terms, tmp_path):
    tr, te = _dated()
    fit = lambda mode, backend='torch', **kw: MF(mode, backend, k=3, max_epochs=30, burn_in=10, seed=1, progress=False, **kw).fit(tr, eval_ratings=te)
    m = fit('timesvdpp_flipped', time_terms=terms, time_bins=4)
    p = m.predict(te.user, te.item, te.timestamp)                   # Unix seconds
    assert abs(np.sqrt(np.mean((p - te.rating) ** 2)) - m.run_.test_rmse) < 1e-6
    np.testing.assert_array_equal(fit('timesvdpp_flipped', 'jax', time_terms=terms, time_bins=4).predict(te.user, te.item, te.timestamp), p)
    np.testing.assert_array_equal(MF.load(m.save(tmp_path / 'm')).predict(te.user, te.item, pd.to_datetime(te.timestamp, unit='s')), p)
    if terms == 'day': assert m.test(te)['rmse'] < fit('svdpp_flipped').test(te)['rmse'] - 0.03   # the moods are found
    m.predict(te.user, te.item)
    assert m.fallbacks_['no_time'] == len(te)

def test_group_bias_draw_is_the_closed_form():
    g, x, e = np.array([0, 0, 2]), np.array([1.0, 2.0, 0.5]), np.array([0.3, -1.0, 2.0])
    lam, alpha = 2.0, 3.0
    P0, P2 = lam + alpha * 5.0, lam + alpha * 0.25
    np.testing.assert_allclose(sample_group_biases(np.zeros(3), g, x, e, lam, alpha), [alpha * (0.3 - 2.0) / P0, 0.0, alpha * 1.0 / P2])
    np.testing.assert_allclose(sample_group_biases(np.ones(3), g, x, e, lam, alpha) - sample_group_biases(np.zeros(3), g, x, e, lam, alpha),
                               [P0 ** -0.5, 0.0, P2 ** -0.5])

def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match='biased'): MF('svdpp', biased=False, progress=False).fit(tiny()[0])
    with pytest.raises(ValueError, match='svdpp modes only'): MF('sparse').fit(tiny()[0], implicit_pairs=tiny()[1][['user', 'item']])
    with pytest.raises(ValueError, match='output must be one of'): MF('neural', output='tanh')
    with pytest.raises(ValueError, match='PyTorch only'): MF('neural', backend='jax')
    with pytest.raises(ValueError, match='no time column'): MF('timesvdpp_flipped', progress=False).fit(tiny()[0])

"Bayesian SVD++ (Gibbs) and NeuralMF of `recsys_nb.accuracy`: the sampler against closed forms, tiny fits, seeds; the u1…u5 splits."
from pathlib import Path
import numpy as np, pandas as pd, pytest, scipy.sparse as sp
from recsys_nb.accuracy import BayesSVDpp, NeuralMF, IMPLICIT, _sample_rows, _sample_implicit, _gram
from recsys_nb.data import read_ratings
from recsys_nb.splits import movielens_u_split

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

@pytest.mark.parametrize('implicit', IMPLICIT)
def test_bayes_svdpp_fits_predicts_and_repeats(implicit, tmp_path):
    tr, te = tiny()
    make = lambda seed: BayesSVDpp(k=3, implicit=implicit, sweeps=8, burn_in=3, seed=seed).fit(tr, implicit_pairs=te[['user', 'item']])
    m = make(1)
    p = m.predict(te.user, te.item)
    assert len(m.samples_) == 5 and ((p >= 1) & (p <= 5)).all()
    np.testing.assert_array_equal(make(1).predict(te.user, te.item), p)
    assert not np.array_equal(make(2).predict(te.user, te.item), p)
    np.testing.assert_array_equal(BayesSVDpp.load(m.save(tmp_path / 'm')).predict(te.user, te.item), p)

@pytest.mark.parametrize('kw', [{}, dict(output='sigmoid'), dict(gamma=0.0, lmd=5.0), dict(head='mlp', hidden=4)])
def test_neural_mf_fits_predicts_and_repeats(kw, tmp_path):
    tr, te = tiny()
    make = lambda: NeuralMF(k=3, epochs=20, lr=0.05, seed=3, **kw).fit(tr)
    m = make()
    p = m.predict(te.user, te.item)
    assert ((p >= 1) & (p <= 5)).all()
    np.testing.assert_array_equal(make().predict(te.user, te.item), p)
    np.testing.assert_array_equal(NeuralMF.load(m.save(tmp_path / 'm')).predict(te.user, te.item), p)

def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match='implicit must be one of'): BayesSVDpp(implicit='time')
    with pytest.raises(ValueError, match='sweeps > burn_in'): BayesSVDpp(sweeps=5, burn_in=5)
    with pytest.raises(ValueError, match='output must be one of'): NeuralMF(output='tanh')

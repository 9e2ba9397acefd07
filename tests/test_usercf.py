"""Property tests of recsys_nb.usercf against the per-pair reference loops, backend agreement, Surprise parity on
MovieLens 100K (skipped when ../shared/data is absent), streaming, validation and the command line."""
import itertools, json, subprocess, sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given, settings, HealthCheck, strategies as st

from recsys_nb.usercf import (UserCF, SIMILARITIES, FALLBACKS, make_trainset, baseline_als, naive_similarity,
                              naive_predict, keep_top_k, evaluate_usercf)

ML100K = Path(__file__).parents[2] / 'shared' / 'data' / 'ml-100k' / 'u.data'

@st.composite
def rating_sets(draw, max_users=14, max_movies=12):
    "Random small rating matrices: whole or half stars, distinct pairs, some users/movies without ratings."
    n, m = draw(st.integers(2, max_users)), draw(st.integers(2, max_movies))
    cells = draw(st.lists(st.integers(0, n * m - 1), min_size=1, max_size=n * m, unique=True))
    half = draw(st.booleans())
    stars = draw(st.lists(st.integers(1, 10 if half else 5), min_size=len(cells), max_size=len(cells)))
    r = np.array(stars, np.float32) / (2 if half else 1)
    cells = np.array(cells)
    return cells // m, cells % m, r, n + 1, m + 1        # one extra user and movie without ratings

opts = st.fixed_dictionaries({'sim': st.sampled_from(SIMILARITIES), 'k': st.sampled_from([None, 1, 2, 3, 5, 50]),
                              'min_k': st.sampled_from([0, 1, 2, 3]), 'center': st.booleans(),
                              'fallback': st.sampled_from(FALLBACKS), 'min_support': st.sampled_from([1, 2, 3])})

@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rating_sets(), opts)
def test_equals_reference_loops(data, o):
    u, m, r, n, nm = data
    model = UserCF(**o, clip=False).fit((u, m, r), shape=(n, nm))
    ts = model.ts
    bias = baseline_als(ts) if o['sim'] == 'pearson_baseline' else None
    ref_S = naive_similarity(u, m, r, n, o['sim'], o['min_support'], 100., bias, ts.global_mean)
    S = model.similarity()
    assert np.abs(S - ref_S).max() < 1e-5
    pairs = [(a, b) for a in range(n + 1) for b in range(nm + 1)]
    pu, pm = np.array(pairs).T
    got = model.predict_pairs(pu, pm)
    ref = naive_predict(u, m, r, S.astype(np.float64), pairs, o['k'], o['min_k'], o['center'], o['fallback'])
    assert np.isfinite(got).all()
    assert np.abs(got - ref).max() < 1e-5

@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(-3, 6), min_size=1, max_size=15), st.integers(1, 16))
def test_keep_top_k_is_surprise_nlargest(row, k):
    import heapq
    row = np.array(row, np.float64) / 2
    top = heapq.nlargest(k, list(enumerate(row)), key=lambda t: t[1])
    ref = np.zeros_like(row)
    for j, s in top:
        if s > 0: ref[j] = s
    assert (keep_top_k(row[None], k)[0] == ref).all()

def random_ratings(n, m, count, seed):
    rng = np.random.default_rng(seed)
    keys = rng.choice(n * m, count, replace=False)
    return keys // m, keys % m, rng.integers(1, 6, count).astype(np.float32)

@pytest.mark.parametrize('backend', ['torch', 'jax'])
def test_backends_agree(backend):
    u, m, r = random_ratings(80, 50, 1500, 1)
    rng = np.random.default_rng(2)
    pu, pm = rng.integers(0, 82, 2000), rng.integers(0, 52, 2000)
    for sim, (k, center, min_k) in itertools.product(SIMILARITIES, [(None, False, 1), (None, True, 2), (9, False, 3), (9, True, 1)]):
        kw = dict(sim=sim, k=k, center=center, min_k=min_k)
        a = UserCF(**kw).fit((u, m, r), shape=(80, 50))
        b = UserCF(**kw, backend=backend, device='cpu').fit((u, m, r), shape=(80, 50))
        pa, da = a.predict_pairs(pu, pm, return_details=True)
        pb, db = b.predict_pairs(pu, pm, return_details=True)
        assert np.abs(pa - pb).max() < 1e-4, kw
        assert (da['actual_k'] == db['actual_k']).all() and a.fallbacks_ == b.fallbacks_
        assert np.abs(a.similarity() - b.similarity()).max() < 1e-6

@pytest.mark.parametrize('backend', ['numpy', 'torch'])
def test_streamed_blocks_equal_whole(backend):
    u, m, r = random_ratings(120, 60, 2500, 3)
    rng = np.random.default_rng(4)
    pu, pm = rng.integers(0, 120, 3000), rng.integers(0, 60, 3000)
    for sim, k in itertools.product(['cosine', 'msd', 'pearson_baseline'], [None, 6]):
        whole = UserCF(sim, k=k, backend=backend, device='cpu' if backend != 'numpy' else None).fit((u, m, r), shape=(120, 60))
        blocks = UserCF(sim, k=k, backend=backend, device='cpu' if backend != 'numpy' else None, store='blocks',
                        memory_budget=2 ** -11).fit((u, m, r), shape=(120, 60))
        assert blocks.S is None and whole.S is not None
        assert np.abs(whole.predict_pairs(pu, pm) - blocks.predict_pairs(pu, pm)).max() < 1e-5

def test_float64_similarities_and_top_k_neighbourhood():
    u, m, r = random_ratings(50, 30, 600, 5)
    a = UserCF('pearson', k=5, dtype='float64').fit((u, m, r), shape=(50, 30))
    assert a.similarity().dtype == np.float64
    b = UserCF('pearson', k=5, neighbourhood='top_k', backend='numpy').fit((u, m, r), shape=(50, 30))
    assert b.nb_users.shape == (50, 5) and b.S is None
    p = b.predict_pairs(np.arange(50), np.zeros(50, np.int64))
    assert np.isfinite(p).all()

def test_input_validation():
    with pytest.raises(ValueError, match='rated more than once'): UserCF().fit(([0, 0], [1, 1], [3., 4.]))
    with pytest.raises(ValueError, match="reads as 'missing'"): UserCF().fit(([0, 1], [1, 1], [3., 0.]))
    with pytest.raises(ValueError, match='not finite'): UserCF().fit(([0, 1], [1, 1], [3., np.nan]))
    with pytest.raises(ValueError, match='sim must be'): UserCF('jaccard')
    with pytest.raises(ValueError, match='k must be'): UserCF(k=0)
    with pytest.raises(ValueError, match='needs k'): UserCF(neighbourhood='top_k')
    with pytest.raises(TypeError): UserCF().fit('ratings.csv')
    model = UserCF().fit(([0, 1, 2], [0, 1, 1], [3., 4., 5.]))
    with pytest.raises(ValueError, match='integer'): model.predict_pairs(np.array([0.5]), np.array([1]))
    with pytest.raises(ValueError, match='one length'): model.predict_pairs(np.array([0, 1]), np.array([1]))
    with pytest.raises(RuntimeError, match='fit'): UserCF().predict_pairs([0], [0])

def test_never_nan_and_fallbacks_counted():
    R = sp.csr_matrix(np.array([[5, 3, 0, 1], [4, 0, 0, 1], [1, 1, 0, 5], [0, 1, 5, 4], [0, 0, 4, 0]], np.float32))
    for fb in FALLBACKS:
        model = UserCF('cosine', fallback=fb).fit(R)
        p = model.predict_pairs(np.array([4, 0, 5, 1, 2]), np.array([0, 2, 0, 9, 1]))
        assert np.isfinite(p).all()
        assert model.fallbacks_ == {'unknown_user': 1, 'unknown_movie': 1, 'too_few_neighbours': 1, 'total': 3}
        assert p[2] == pytest.approx(model.ts.global_mean)
        assert p[3] == pytest.approx(model.ts.user_mean[1] if fb == 'user_mean' else model.ts.global_mean)

@pytest.mark.skipif(not ML100K.exists(), reason='../shared/data/ml-100k not present')
@pytest.mark.parametrize('algo,sim', [('KNNBasic', 'msd'), ('KNNBasic', 'cosine'), ('KNNWithMeans', 'pearson'),
                                      ('KNNWithMeans', 'pearson_baseline')])
def test_surprise_parity_ml100k(algo, sim):
    surprise = pytest.importorskip('surprise')
    from surprise.model_selection import KFold
    from recsys_nb.data import read_ratings, make_rating_data
    from recsys_nb.splits import kfold_split
    data = make_rating_data(*next(kfold_split(read_ratings(ML100K), 5, 0)))
    s_train, s_test = next(KFold(n_splits=5, random_state=0).split(
        surprise.Dataset.load_from_file(str(ML100K), surprise.Reader('ml-100k'))))
    u, m, r = data.triples('test')
    ours_sim = 'cosine_common' if sim == 'cosine' else sim
    for k in (10_000, 40):
        est = np.array([p.est for p in getattr(surprise, algo)(k=k, sim_options={'name': sim, 'user_based': True},
                                                               verbose=False).fit(s_train).test(s_test)])
        p = UserCF(ours_sim, k=k, center=algo == 'KNNWithMeans', fallback='global_mean').fit(data).predict_pairs(u, m)
        d = np.abs(p - est)
        rm_s, rm_o = np.sqrt(np.mean((est - r) ** 2)), np.sqrt(np.mean((p - r) ** 2))
        if k > 1000: assert d.max() < 1e-4                      # all neighbours: every prediction
        else: assert np.mean(d <= 1e-4) >= 0.99 and abs(rm_s - rm_o) < 1e-3
    p64 = UserCF(ours_sim, k=40, center=algo == 'KNNWithMeans', fallback='global_mean', dtype='float64').fit(data).predict_pairs(u, m)
    assert np.abs(p64 - est).max() < 1e-5                      # float64 similarities: ties broken identically

def test_evaluate_and_cli(tmp_path):
    from recsys_nb.data import load_netflix
    from recsys_nb.synth import synth_netflix
    d = synth_netflix(tmp_path / 'tiny', size='tiny', seed=0)
    res = evaluate_usercf(load_netflix(d), sim='msd', k=20)
    for key in ('train_rmse', 'test_rmse', 'test_mae', 'seconds', 'fallbacks'): assert key in res
    assert res['fallbacks']['total'] == 0 and res['test_rmse'] < 1.2
    assert res['load_seconds'] > 0 and res['seconds'] >= res['fit_seconds'] + res['predict_seconds'] - 0.002
    out = subprocess.run([sys.executable, '-m', 'recsys_nb.cli', 'usercf', '--data', str(d), '--sim', 'msd', '--k', '20',
                          '--json'], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got['test_rmse'] == pytest.approx(res['test_rmse'], abs=1e-9)


_WARM_CHECK = '''
import json, sys, numba
import recsys_nb.estimator as E, recsys_nb.usercf as U
from recsys_nb.data import load_netflix
data = load_netflix(sys.argv[1])
def signatures():
    return {k: len(v.signatures) for m in (E, U) for k, v in vars(m).items() if isinstance(v, numba.core.registry.CPUDispatcher)}
U.warm_up_usercf(data)
before = signatures()
model = U.UserCF().fit(data)
model.predict_pairs(*data.triples('test')[:2]); model.predict(data.test.user_id, data.test.movie_id)
print(json.dumps({k: [before.get(k, 0), n] for k, n in signatures().items() if n != before.get(k, 0)}))
'''


def test_warm_up_leaves_nothing_to_compile_in_the_timed_part(tmp_path):
    "In a fresh process, after `warm_up_usercf` the timed fit and predictions on the whole data use no new Numba signature (read-only pandas arrays once compiled anew)."
    from recsys_nb.synth import synth_netflix
    d = synth_netflix(tmp_path / 'tiny', size='tiny', seed=0)
    out = subprocess.run([sys.executable, '-c', _WARM_CHECK, str(d)], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {}

_TORCH_CHECK = '''
import sys
import recsys_nb.usercf as U, recsys_nb.report as R
from recsys_nb.data import load_netflix
data = load_netflix(sys.argv[1])
U.warm_up_usercf(data)
small = 'torch' in sys.modules                     # too small for the int8 products: PyTorch not loaded
U.int8_pays = lambda work: True                     # as at the course's shape
fit, seen = U.UserCF.fit, []
U.UserCF.fit = lambda self, *a, **k: (seen.append('torch' in sys.modules), fit(self, *a, **k))[1]
R.fit_predict_usercf(data)                          # the report's timed fit, after its warm-up
print(small, seen)
'''


def test_usercf_warm_up_loads_torch_before_every_fit_when_int8_pays(tmp_path):
    "In a fresh process: `warm_up_usercf` loads PyTorch only where the int8 products run, and before any fit, the report's included."
    from recsys_nb.synth import synth_netflix
    d = synth_netflix(tmp_path / 'tiny', size='tiny', seed=0)
    out = subprocess.run([sys.executable, '-c', _TORCH_CHECK, str(d)], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == 'False [True, True]'


def test_seen_pairs_are_the_training_matrix_pattern():
    "UserCF's `seen_` (what `recommend` leaves out) is exactly `seen_matrix` of its training codes, on both fit paths."
    from recsys_nb.estimator import seen_matrix
    u, m, r = random_ratings(30, 20, 200, 5)
    for model in (UserCF().fit((u, m, r), shape=(30, 20)), UserCF().fit(pd.DataFrame({'user': u, 'item': m, 'rating': r}))):
        uc, ic = model.users_.index(u), model.items_.index(m)
        ref = seen_matrix(uc, ic, len(model.users_), len(model.items_))
        assert model.seen_.shape == ref.shape and (model.seen_ != ref).nnz == 0 and model.seen_.has_sorted_indices


def test_threaded_gather_and_sparse_tail_agree_with_reference(monkeypatch):
    "Compiled sums in many ranges over several threads, every movie gathered, sparse tails in row slices: same as the loops."
    import recsys_nb.usercf as uc
    monkeypatch.setattr(uc, 'GATHER_COST', 0.)
    monkeypatch.setattr(uc, 'n_threads', lambda: 3)
    monkeypatch.setattr(uc, 'SPARSE_COST', 0.); monkeypatch.setattr(uc, 'OUTPUT_COST', 0.)   # all movies sparse
    u, m, r = random_ratings(40, 30, 500, 3)
    model = UserCF('cosine', clip=False).fit((u, m, r), shape=(40, 30))
    assert model.engine.n_dense == 0                       # the whole similarity comes from the sparse tail
    S = model.similarity()
    assert np.abs(S - naive_similarity(u, m, r, 40, 'cosine')).max() < 1e-5
    pairs = [(a, b) for a in range(40) for b in range(30)]
    pu, pm = np.array(pairs).T
    ref = naive_predict(u, m, r, S.astype(np.float64), pairs)
    assert np.abs(model.predict_pairs(pu, pm) - ref).max() < 1e-5

def test_exact_int8_products_give_the_float32_predictions(monkeypatch):
    "Star ratings through the int8 products: the same similarities and predictions as through float32 products."
    import recsys_nb.usercf as uc
    u, m, r = random_ratings(40, 30, 500, 4)
    pu, pm = np.array([(a, b) for a in range(40) for b in range(30)]).T
    for sim, k in (('cosine', None), ('msd', 5), ('pearson', 3)):
        monkeypatch.setattr(uc, 'int8_pays', lambda macs: False)
        ref = UserCF(sim, k=k).fit((u, m, r), shape=(40, 30))
        monkeypatch.setattr(uc, 'int8_pays', lambda macs: True)
        got = UserCF(sim, k=k).fit((u, m, r), shape=(40, 30))
        monkeypatch.undo()
        assert got.engine.exact_int8 and not ref.engine.exact_int8
        assert np.abs(got.similarity() - ref.similarity()).max() < 1e-6
        assert np.abs(got.predict_pairs(pu, pm) - ref.predict_pairs(pu, pm)).max() < 1e-5

def test_int8_pays_only_for_big_products_without_torch():
    "A fresh process without PyTorch keeps small products in float32 and takes int8 for big ones."
    code = ("import sys, recsys_nb.usercf as uc; assert 'torch' not in sys.modules; "
            "print(uc.int8_pays(1), uc.int8_pays(uc.INT8_MIN_MACS))")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ['False', 'True']

@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rating_sets())
def test_trainset_layouts_equal_scipy_and_a_stable_sort(rs):
    "The counting sorts give SciPy's sorted CSR and each movie's raters in training order; repeats are refused."
    u, m, r, n, nm = rs
    perm = np.random.default_rng(len(u)).permutation(len(u))     # training order is not sorted
    u, m, r = u[perm], m[perm], r[perm]
    ts = make_trainset((u, m, r), shape=(n, nm))
    ref = sp.csr_matrix((r, (u, m)), shape=(n, nm)); ref.sort_indices()
    assert np.array_equal(ts.R.indptr, ref.indptr) and np.array_equal(ts.R.indices, ref.indices)
    assert np.array_equal(ts.R.data, ref.data)
    o = np.argsort(m, kind='stable')
    assert np.array_equal(ts.item_users, u[o]) and np.array_equal(ts.item_ratings, r[o])
    assert np.array_equal(ts.item_ptr, np.r_[0, np.cumsum(np.bincount(m, minlength=nm))])
    with pytest.raises(ValueError, match='1 .user, movie. pairs are rated more than once'):
        make_trainset((np.r_[u, u[0]], np.r_[m, m[0]], np.r_[r, r[0]]), shape=(n, nm))

def test_seen_matrix_and_counting_order_equal_scipy_and_numpy():
    from recsys_nb.estimator import seen_matrix, counting_order
    rng = np.random.default_rng(0)
    u, i = rng.integers(0, 50, 3000), rng.integers(0, 40, 3000)            # many repeated pairs
    M = seen_matrix(u, i, 60, 45)
    ref = sp.csr_matrix((np.ones(len(u), bool), (u, i)), shape=(60, 45)); ref.sum_duplicates(); ref.sort_indices()
    assert M.shape == (60, 45) and np.array_equal(M.indptr, ref.indptr) and np.array_equal(M.indices, ref.indices)
    k = rng.integers(0, 7, 500)
    assert np.array_equal(counting_order(k, 7), np.argsort(k, kind='stable'))

def test_dense_and_sparse_column_split_agree():
    "Every split of the movies between dense (int8 or float32) and sparse parts gives the same similarities."
    import recsys_nb.usercf as uc
    u, m, r = random_ratings(30, 25, 300, 5)
    ref = UserCF('pearson').fit((u, m, r), shape=(30, 25)).similarity()
    for d in (0, 7, 25):
        orig = uc.dense_split
        try:
            uc.dense_split = lambda counts, n, budget_items=None, speed=1.: d
            model = UserCF('pearson').fit((u, m, r), shape=(30, 25))
        finally: uc.dense_split = orig
        assert model.engine.n_dense == d
        assert np.abs(model.similarity() - ref).max() < 1e-6

def test_preload_torch_only_for_big_files(tmp_path):
    "The command starts loading PyTorch while it reads big files, and not for small ones."
    f = tmp_path / 'r.txt'; f.write_text('1 1 5\n')
    code = ("import sys; from recsys_nb.usercf import preload_torch; "
            f"assert preload_torch([{str(f)!r}]) is None and 'torch' not in sys.modules; "
            f"th = preload_torch([{str(tmp_path)!r}], min_bytes=1); th.join(); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ['True']

def test_int8_products_are_exact_for_every_width():
    "The int8 product equals the float one for every number of columns, the narrow ones included (PyTorch's kernel is wrong for one)."
    from recsys_nb.usercf import int8_matmul_t
    rng = np.random.default_rng(0)
    for k in range(0, 20):
        A, B = rng.integers(-127, 128, (17, k)).astype(np.int8), rng.integers(-127, 128, (5, k)).astype(np.int8)
        got = int8_matmul_t(A, B)
        assert got.dtype == np.float32 and got.shape == (17, 5)
        assert np.array_equal(got, A.astype(np.float64) @ B.astype(np.float64).T), k

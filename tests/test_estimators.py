"""The estimator surface (`recsys_nb.UserCF`, `recsys_nb.MF`): raw ids of any type, predict/test/recommend, fold-in,
save/load in a fresh process and across frameworks, no pickle, and which frameworks each module imports."""
import json, re, subprocess, sys, textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import SHARED_DATA, needs_shared
from recsys_nb import MF, UserCF, Estimator
from recsys_nb.data import load_netflix, read_ratings
from recsys_nb.splits import movielens_u_split
from recsys_nb.synth import default_dataset

ROOT = Path(__file__).resolve().parents[1]


def _u1():
    "MovieLens 100K's canonical u1 split as (base, test) DataFrames of user, item, rating."
    base, test = movielens_u_split(read_ratings(SHARED_DATA / 'ml-100k' / 'u.data'), 1)
    ren = {'user_id': 'user', 'movie_id': 'item'}
    return base.rename(columns=ren)[['user', 'item', 'rating']], test.rename(columns=ren)[['user', 'item', 'rating']]


def _as_strings(df):
    return df.assign(user='u' + df.user.astype(str), item='i' + df.item.astype(str))


@pytest.fixture(scope='module')
def tiny():
    d = load_netflix(default_dataset('tiny'))
    return tuple(df[['user_id', 'movie_id', 'rating']].rename(columns={'user_id': 'user', 'movie_id': 'item'})
                 for df in (d.train, d.test))


@needs_shared('ml-100k')
@pytest.mark.parametrize('make', [lambda: UserCF(sim='msd', k=40), lambda: MF(mode='sparse', progress=False)],
                         ids=['usercf', 'mf'])
def test_string_ids_give_exactly_the_integer_figures(make):
    base, test = _u1()
    a, b = make().fit(base), make().fit(_as_strings(base))
    ra, rb = a.test(test), b.test(_as_strings(test))
    assert ra['rmse'] == rb['rmse'] and ra['mae'] == rb['mae'] and ra['fallbacks'] == rb['fallbacks']
    assert 0.85 < ra['rmse'] < 1.0
    users = base.user.unique()[:50]
    ka, kb = a.recommend(users, n=10), b.recommend(['u' + str(u) for u in users], n=10)
    assert (('i' + ka.item.astype(str)).tolist() == kb.item.tolist()) and np.array_equal(ka.score, kb.score)


@needs_shared('ml-100k')
def test_usercf_raw_ids_equal_the_index_path():
    "A DataFrame of raw ids (codes in first-seen order) predicts what a RatingData (sorted codes) does."
    from recsys_nb.data import make_rating_data
    base, test = movielens_u_split(read_ratings(SHARED_DATA / 'ml-100k' / 'u.data'), 1)
    data = make_rating_data(base, test)
    by_index = UserCF(sim='msd', k=40).fit(data)
    by_raw = UserCF(sim='msd', k=40).fit(base[['user_id', 'movie_id', 'rating']])
    assert by_index.users_ is data.users                       # the RatingData's own map: its codes, sorted ids
    p_index = by_index.predict_pairs(*data.triples('test')[:2])
    p_raw = by_raw.predict(test.user_id, test.movie_id)
    np.testing.assert_allclose(p_raw, p_index, atol=1e-5)
    assert by_raw.test(test[['user_id', 'movie_id', 'rating']])['rmse'] == pytest.approx(by_index.test(data)['rmse'], abs=1e-7)


def test_recommend_excludes_seen_and_ranks(tiny):
    train, _ = tiny
    for model in (UserCF(sim='cosine', k=20).fit(train), MF(k=8, progress=False, max_epochs=30).fit(train)):
        users = train.user.unique()
        rec = model.recommend(users, n=10)
        assert len(rec) == 10 * len(users) and list(rec.columns) == ['user', 'item', 'score', 'rank']
        seen = set(zip(train.user, train.item))
        assert not any(pair in seen for pair in zip(rec.user, rec.item))
        assert (rec.groupby('user')['score'].diff().dropna() <= 0).all()
        assert rec.groupby('user')['rank'].apply(list).map(lambda r: r == list(range(1, 11))).all()
        # the scores are the predictions (UserCF) or the unclipped ones (MF)
        top = rec[rec['rank'] == 1]
        p = model.predict(top.user, top.item)
        if isinstance(model, UserCF): np.testing.assert_allclose(top.score, p, rtol=1e-6)
        assert model.recommend([-1], n=3).shape == (3, 4) and model.fallbacks_['unknown_user'] == 1


def test_predict_counts_fallbacks_and_never_raises(tiny):
    train, test = tiny
    for model in (UserCF().fit(train), MF(k=4, progress=False, max_epochs=5).fit(train)):
        p = model.predict([train.user[0], 'nobody', train.user[0]], [train.item[0], train.item[0], 'nothing'])
        assert np.isfinite(p).all()
        assert model.fallbacks_['unknown_user'] == 1 and model.fallbacks_['total'] == 2
    with pytest.raises(RuntimeError, match='not fitted'): MF().predict([1], [2])
    with pytest.raises(ValueError, match='no user column'): UserCF().fit(train.rename(columns={'user': 'who'}))
    assert UserCF().fit(train.rename(columns={'user': 'who'}), user='who').test(test.rename(columns={'user': 'who'}), user='who')['n'] == len(test)


def test_usercf_fold_in_equals_a_refit_for_new_users(tiny):
    train, test = tiny
    users = train.user.unique()
    new_users = users[-15:]
    old, new = train[~train.user.isin(new_users)], train[train.user.isin(new_users)]
    for sim, k in (('msd', 40), ('pearson', 10), ('cosine', None)):
        folded = UserCF(sim=sim, k=k).fit(old)
        before = folded.predict(test.user, test.item)
        folded.fold_in(new)
        refit = UserCF(sim=sim, k=k).fit(pd.concat([old, new]))
        asked = test[test.user.isin(new_users) & test.item.isin(old.item)]
        np.testing.assert_allclose(folded.predict(asked.user, asked.item), refit.predict(asked.user, asked.item), atol=1e-5)
        others = ~test.user.isin(new_users)
        np.testing.assert_array_equal(folded.predict(test.user[others], test.item[others]), before[others.to_numpy()])
    with pytest.raises(ValueError, match='already in the model'): folded.fold_in(new)


def test_mf_fold_in_solves_the_new_users_and_leaves_the_rest(tiny):
    train, test = tiny
    new_users = train.user.unique()[-10:]
    old, new = train[~train.user.isin(new_users)], train[train.user.isin(new_users)]
    model = MF(k=8, progress=False, max_epochs=50).fit(old)
    before = model.predict(old.user[:500], old.item[:500])
    model.fold_in(new)
    np.testing.assert_array_equal(model.predict(old.user[:500], old.item[:500]), before)
    # the new users fit their own ratings better than the fallback (item biases only) does
    known = new[new.item.isin(old.item)]
    fitted = np.sqrt(np.mean((model.predict(known.user, known.item) - known.rating) ** 2))
    plain = MF(k=8, progress=False, max_epochs=50).fit(old)
    fallback = np.sqrt(np.mean((plain.predict(known.user, known.item) - known.rating) ** 2))
    assert fitted < fallback - 0.05


SAVE_LOAD = textwrap.dedent('''
    import json, sys
    import pandas as pd
    from recsys_nb import Estimator
    model = Estimator.load(sys.argv[1])
    users, items = json.loads(sys.argv[2]), json.loads(sys.argv[3])
    print(json.dumps({'predict': model.predict(users, items).tolist(),
                      'recommend': model.recommend(users[:5], n=7).astype({'score': float}).to_dict('list')}))
''')


@pytest.mark.parametrize('make', [lambda: UserCF(sim='pearson', k=30), lambda: MF(mode='als', k=6, progress=False),
                                  lambda: MF(mode='bayes', k=4, max_epochs=30, burn_in=10, progress=False)],
                         ids=['usercf', 'mf-als', 'mf-bayes'])
def test_save_then_load_in_a_fresh_process(tmp_path, tiny, make):
    train, test = tiny
    s_train, s_test = _as_strings(train), _as_strings(test)
    model = make().fit(s_train[:-60])
    model.fold_in(s_train[-60:][~s_train[-60:].user.isin(s_train[:-60].user)])
    model.save(tmp_path / 'm')
    assert sorted(p.name for p in (tmp_path / 'm').iterdir()) == ['arrays.npz', 'model.json']
    users, items = s_test.user.tolist()[:300], s_test.item.tolist()[:300]
    out = subprocess.run([sys.executable, '-c', SAVE_LOAD, str(tmp_path / 'm'), json.dumps(users), json.dumps(items)],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout)
    assert got['predict'] == model.predict(users, items).tolist()
    assert got['recommend'] == model.recommend(users[:5], n=7).astype({'score': float}).to_dict('list')


@pytest.mark.parametrize('trained,loaded', [('torch', 'jax'), ('jax', 'torch')])
def test_a_model_saved_by_one_framework_predicts_the_same_in_the_other(tmp_path, tiny, trained, loaded):
    from recsys_nb.mf import MFData
    train, test = tiny
    model = MF(k=8, backend=trained, progress=False, max_epochs=40).fit(train)
    model.save(tmp_path / 'm')
    back = MF.load(tmp_path / 'm', backend=loaded)
    assert back.backend == loaded and back.get_params()['k'] == 8
    u, i = back.codes(test.user, test.item)
    keep = (u < len(back.users_)) & (i < len(back.items_))
    trainer_cls = {'jax': 'recsys_nb.mf_jax:JaxMFTrainer', 'torch': 'recsys_nb.mf_torch:TorchMFTrainer'}[loaded]
    mod, name = trainer_cls.split(':')
    Trainer = getattr(__import__(mod, fromlist=[name]), name)
    tu, ti = back.codes(train.user, train.item)       # the training triples give the trainer its μ and rating range
    tr = Trainer(back.config, MFData(len(back.users_), len(back.items_), (tu, ti, train.rating.to_numpy())), init=back.factors_)
    np.testing.assert_allclose(tr.predict(u[keep], i[keep]), model.predict(test.user[keep], test.item[keep]), atol=1e-6)


def test_params_and_repr():
    m = MF(mode='als', k=12)
    assert m.get_params() == {'mode': 'als', 'backend': 'torch', 'k': 12}
    assert m.set_params(k=5, backend='jax').config.k == 5 and m.backend == 'jax'
    with pytest.raises(ValueError, match='MFConfig.k'): m.set_params(k=0)
    with pytest.raises(ValueError, match='backend'): MF(backend='tf')
    assert repr(UserCF(sim='msd', k=40)) == "UserCF(sim='msd', k=40)"
    assert UserCF().set_params(k=3).k == 3
    with pytest.raises(ValueError, match='has no parameters'): UserCF().set_params(kk=3)


def test_load_refuses_other_files(tmp_path):
    with pytest.raises(FileNotFoundError, match='no saved model'): MF.load(tmp_path)
    (tmp_path / 'model.json').write_text('not json')
    with pytest.raises(ValueError, match='not valid JSON'): MF.load(tmp_path)
    (tmp_path / 'model.json').write_text(json.dumps({'format': 'recsys_nb-model', 'format_version': 1, 'class': 'UserCF',
                                                     'params': {}, 'state': {}, 'arrays': []}))
    with pytest.raises(ValueError, match='holds a UserCF model; MF.load reads MF models'): MF.load(tmp_path)


def test_no_pickle_in_the_library():
    "Nothing in the package pickles or unpickles: models and checkpoints are arrays and JSON."
    for f in sorted((ROOT / 'recsys_nb').glob('*.py')):
        src = f.read_text()
        assert not re.search(r'^\s*import pickle|^\s*from pickle|pickle\.(load|dump)|allow_pickle\s*=\s*True', src, re.M), f.name


@pytest.mark.parametrize('module,absent', [('recsys_nb.mf_torch', ('jax', 'flax', 'optax')), ('recsys_nb.mf_jax', ('torch',)),
                                           ('recsys_nb.mf', ('jax', 'flax', 'optax', 'torch')),
                                           ('recsys_nb', ('jax', 'flax', 'optax', 'torch', 'numba'))])
def test_each_module_loads_only_its_framework(module, absent):
    code = f"import {module}, sys; print([m for m in sys.modules if m.split('.')[0] in {absent!r}])"
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == '[]', out.stdout


def test_load_survives_a_class_defined_again_under_the_same_name(tmp_path):
    "A notebook that runs its exported cells defines `MF` again (and registers it); the library's `MF.load` still reads library models."
    from recsys_nb.estimator import Estimator
    from recsys_nb.mf import MF
    g = np.random.default_rng(0)
    df = pd.DataFrame({'user': g.integers(0, 20, 200), 'item': g.integers(0, 15, 200), 'rating': g.integers(1, 6, 200).astype(float)})
    path = MF('sparse', max_epochs=3, progress=False).fit(df).save(tmp_path / 'm')
    saved = dict(Estimator._registry)
    try:
        type('MF', (Estimator,), {})                                  # what re-running 03_mf's exported cells does
        assert type(MF.load(path)) is MF
    finally:
        Estimator._registry.clear(); Estimator._registry.update(saved)

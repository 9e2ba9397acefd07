"Data layer: formats, validation messages, policies, splits, generators, the `data` commands."
import json, subprocess, sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from recsys_nb.data import DataError, read_movie_titles, read_ratings, load_netflix, load_movielens, make_rating_data, IdMap, detect_format
from recsys_nb.splits import kfold_split, time_split, random_split, validation_split
from recsys_nb.synth import synth_netflix, synth_movielens
from conftest import SHARED_DATA, needs_shared


def cli(*args):
    return subprocess.run([sys.executable, '-m', 'recsys_nb.cli', *map(str, args)], capture_output=True, text=True)


def test_movie_titles_quirks(tmp_path):
    p = tmp_path / 'movie_titles.txt'
    p.write_bytes(b'72,1974,At Home Among Strangers, A Stranger Among His Own\r\n'
                  b'4388,NULL,Ancient Civilizations: Rome and Pompeii\r\n'
                  b'17000,2001,Am\xe9lie\r\n\r\n')
    df = read_movie_titles(p)
    assert df.values.tolist()[0] == [72, 1974, 'At Home Among Strangers, A Stranger Among His Own']
    assert df.movie_id.tolist() == [72, 4388, 17000] and pd.isna(df.year[1])
    assert df.title.tolist()[1:] == ['Ancient Civilizations: Rome and Pompeii', 'Amélie']
    assert str(df.year.dtype) == 'Int16'


def test_titles_errors_name_file_and_line(tmp_path):
    p = tmp_path / 'movie_titles.txt'
    p.write_text('1,2000,A\n2,2000\n')
    with pytest.raises(DataError, match=r'movie_titles.txt, line 2: expected 3'):
        read_movie_titles(p)
    p.write_text('1,2000,A\n1,2001,B\n')
    with pytest.raises(DataError, match='already defined on line 1'):
        read_movie_titles(p)


@pytest.mark.parametrize('line,msg', [
    ('6 10 7 2005-01-03', "line 3: rating 7 outside the scale 1–5: '6 10 7 2005-01-03'"),
    ('6 10 3', 'line 3: expected 4 fields, found 3'),
    ('6 ten 3 2005-01-03', "line 3: movie id 'ten' is not an integer"),
    ('6 10 3 2005-02-30', "line 3: date '2005-02-30' is not a valid date"),
    ('0 10 3 2005-01-03', 'line 3: user id 0 out of range'),
])
def test_train_file_errors(tmp_path, line, msg):
    p = tmp_path / 'netflix_train.txt'
    p.write_text('1 10 3 2005-01-01\n2 10 4 2005-01-02\n' + line + '\n4 10 4 2005-01-02\n')
    with pytest.raises(DataError) as e:
        read_ratings(p)
    assert 'netflix_train.txt' in str(e.value) and msg in str(e.value)
    assert e.value.line == 3


def test_rating_scale_is_configurable(tmp_path):
    p = tmp_path / 'r.txt'
    p.write_text('1 10 7 2005-01-01\n')
    assert read_ratings(p, rating_scale=(1, 10)).rating.tolist() == [7.0]


def test_cli_bad_train_file_exits_nonzero(tmp_path):
    d = synth_netflix(tmp_path / 'd', 'tiny')
    lines = (d / 'netflix_train.txt').read_text().splitlines()
    u, m, _, day = lines[2].split()
    lines[2] = f'{u} {m} 7 {day}'
    (d / 'netflix_train.txt').write_text('\n'.join(lines) + '\n')
    r = cli('data', 'check', d)
    assert r.returncode == 2 and 'netflix_train.txt, line 3: rating 7' in r.stderr


def test_duplicates_and_unseen_are_counted(tmp_path):
    cols = ['user_id', 'movie_id', 'rating', 'date']
    tr = pd.DataFrame([[1, 1, 3, '2005-01-01'], [1, 1, 5, '2005-02-01'], [2, 1, 4, '2005-01-01']], columns=cols)
    te = pd.DataFrame([[1, 2, 4, '2005-03-01'], [3, 1, 2, '2005-03-01'], [2, 1, 4, '2005-03-01']], columns=cols)
    for df in (tr, te):
        df['date'] = pd.to_datetime(df['date']).astype('datetime64[s]'); df['rating'] = df['rating'].astype(np.float32)
    d = make_rating_data(tr.copy(), te.copy())
    assert d.report['train_duplicates'] == 1
    assert d.train.query('user_id == 1').rating.tolist() == [5.0]          # 'latest' keeps the newest
    assert d.report['test_users_unseen_in_train'] == 1 and d.report['test_movies_unseen_in_train'] == 1
    assert d.report['test_ratings_with_unseen_ids'] == 2 and d.report['train_test_overlap'] == 1
    assert len(d.test) == 3 and d.n_users == 3 and d.n_movies == 2           # kept, in the shared id map
    assert make_rating_data(tr.copy(), te.copy(), duplicates='mean').train.query('user_id == 1').rating.tolist() == [4.0]
    assert len(make_rating_data(tr.copy(), te.copy(), unseen='drop').test) == 1
    with pytest.raises(DataError, match='duplicate'):
        make_rating_data(tr.copy(), te.copy(), duplicates='error')


def test_policies_recount_what_they_change():
    "Repeats in test alone, and dropped unseen ratings: the maps, codes and overlap are those of what is kept."
    cols = ['user_id', 'movie_id', 'rating', 'date']
    day = lambda s: np.datetime64(s, 's')
    tr = pd.DataFrame([[1, 1, 3., day('2005-01-01')], [2, 2, 4., day('2005-01-01')]], columns=cols)
    te = pd.DataFrame([[1, 1, 2., day('2005-01-02')], [1, 1, 5., day('2005-01-03')], [9, 2, 1., day('2005-01-03')],
                       [2, 7, 1., day('2005-01-03')]], columns=cols)
    for df in (tr, te): df['rating'] = df['rating'].astype(np.float32)
    d = make_rating_data(tr.copy(), te.copy(), unseen='drop')
    assert (d.report['train_duplicates'], d.report['test_duplicates']) == (0, 1)
    assert d.report['test_ratings_dropped_unseen'] == 2 and d.report['train_test_overlap'] == 1
    assert d.users.ids.tolist() == [1, 2] and d.movies.ids.tolist() == [1, 2]    # user 9 and movie 7 left with their ratings
    assert d.test[['user', 'movie', 'rating']].values.tolist() == [[0, 0, 5.0]]   # the latest of the repeated pair
    assert d.train[['user', 'movie']].values.tolist() == [[0, 0], [1, 1]]


def test_read_frames_are_writable(tmp_path):
    "Columns come from Arrow without a pandas copy, yet a reader's frame can be changed in place."
    f = tmp_path / 'netflix_train.txt'; f.write_text('1 2 3 2005-01-01\n2 3 4 2005-01-02\n')
    df = read_ratings(f)
    df.loc[0, 'rating'] = 5.0; df['user_id'] += 1
    assert df['rating'].tolist() == [5.0, 4.0] and df['user_id'].tolist() == [2, 3]
    assert df.dtypes.astype(str).tolist() == ['int32', 'int32', 'float32', 'datetime64[s]']


def test_synth_tiny_shape_and_report(tmp_path):
    d = load_netflix(synth_netflix(tmp_path / 't', 'tiny', seed=3))
    s = d.summary()
    assert (s['users'], s['movies'], s['train_ratings'], s['test_ratings']) == (300, 200, 9600, 2400)
    assert 3.3 < s['train_mean_rating'] < 3.9
    assert d.report['users_listed_without_ratings'] == 0 and d.report['rated_movies_without_title'] == 0
    raw = (tmp_path / 't' / 'movie_titles.txt').read_bytes()
    assert b'\r\n' in raw and raw.endswith(b'\r\n\r\n')
    m = d.matrix('train')
    assert m.shape == (300, 200) and m.nnz == 9600 and m.dtype == np.float32


def test_synth_small_has_planted_structure(tmp_path):
    d = load_netflix(synth_netflix(tmp_path / 's', 'small'))
    # user+item bias baseline fitted on train beats the global mean on test by a clear margin
    mu = d.train.rating.mean()
    bu = d.train.groupby('user').rating.mean().sub(mu).reindex(range(d.n_users), fill_value=0).to_numpy()
    bi = (d.train.rating - mu - bu[d.train.user]).groupby(d.train.movie).mean().reindex(range(d.n_movies), fill_value=0).to_numpy()
    rmse = lambda p: float(np.sqrt(np.mean((p - d.test.rating.to_numpy()) ** 2)))
    assert rmse(mu + bu[d.test.user] + bi[d.test.movie]) < rmse(np.full(len(d.test), mu)) - 0.05


def test_cli_synth_and_check_json(tmp_path):
    r = cli('data', 'synth', 'netflix', '--size', 'tiny', '--out', tmp_path / 'x', '--seed', 1)
    assert r.returncode == 0, r.stderr
    r = cli('data', 'check', tmp_path / 'x', '--json')
    out = json.loads(r.stdout)
    assert (out['users'], out['movies'], out['train_ratings'], out['test_ratings']) == (300, 200, 9600, 2400)


def test_formats_detected(tmp_path):
    ml = synth_movielens(tmp_path / 'ml')
    assert detect_format(ml / 'u.data') == 'ml-100k'
    (tmp_path / 'ratings.dat').write_text('1::10::4::978300760\n2::10::5::978300761\n')
    (tmp_path / 'ratings.csv').write_text('userId,movieId,rating,timestamp\n1,10,4.5,978300760\n')
    assert read_ratings(tmp_path / 'ratings.dat').movie_id.tolist() == [10, 10]
    r = read_ratings(tmp_path / 'ratings.csv', rating_scale=(0.5, 5))
    assert r.rating.tolist() == [4.5] and str(r.date[0]) == '2000-12-31 22:12:40'
    r = cli('data', 'check', tmp_path / 'ml', '--json')
    assert json.loads(r.stdout)['train_ratings'] == 6000


@needs_shared('ml-100k')
def test_movielens_100k_real():
    ratings, items = load_movielens(SHARED_DATA / 'ml-100k')
    assert len(ratings) == 100_000 and len(items) == 1682
    assert ratings.rating.between(1, 5).all() and ratings.date.min().year == 1997
    assert items.loc[items.movie_id == 1, 'title'].item() == 'Toy Story (1995)'


@needs_shared('ml-100k')
def test_kfold_matches_surprise_on_ml100k():
    surprise = pytest.importorskip('surprise')
    from surprise.model_selection import KFold
    data = surprise.Dataset.load_from_file(str(SHARED_DATA / 'ml-100k' / 'u.data'), surprise.Reader('ml-100k'))
    ratings, _ = load_movielens(SHARED_DATA / 'ml-100k')
    for (_, ours), (_, theirs) in zip(kfold_split(ratings, 5, seed=0), KFold(5, random_state=0).split(data)):
        assert len(ours) == len(theirs)
        assert list(zip(ours.user_id.astype(str), ours.movie_id.astype(str)))[:500] == [(u, i) for u, i, _ in theirs][:500]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 10**9), min_size=1, max_size=50))
def test_idmap_roundtrip(ids):
    m = IdMap(ids)
    assert (m.raw(m.index(ids)) == np.asarray(ids)).all() and len(m) == len(set(ids))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 300), min_size=1, max_size=40), st.lists(st.integers(-5, 400), max_size=60))
def test_idmap_table_agrees_with_binary_search(ids, raw):
    "Small non-negative ids go through a direct table; it gives the binary search's indices, unknown ids included."
    m = IdMap(ids)
    assert m.table is not None
    raw = np.asarray(raw, np.int64)
    known = np.isin(raw, np.asarray(ids))
    got = m.index(raw, missing=-7)
    want = np.searchsorted(m.ids, raw).clip(0, len(m.ids) - 1)
    assert (got == np.where(known, want, -7)).all()
    if (~known).any():
        with pytest.raises(KeyError, match='unknown ids'): m.index(raw)
    assert IdMap([5, 2**40]).table is None                               # sparse ids: no table of 2^40 entries


@settings(max_examples=20, deadline=None)
@given(st.integers(2, 40), st.floats(0.05, 0.6), st.integers(0, 10))
def test_splits_partition(n, frac, seed):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({'user_id': rng.integers(1, 5, n).astype(np.int32), 'movie_id': np.arange(1, n + 1, dtype=np.int32),
                       'rating': np.float32(3), 'date': (np.datetime64('2005-01-01') + rng.integers(0, 99, n)).astype('datetime64[s]')})
    for tr, te in [random_split(df, frac, seed), time_split(df, frac)]:
        assert sorted(tr.movie_id.tolist() + te.movie_id.tolist()) == list(range(1, n + 1))
    tr, te = time_split(df, frac)
    for u, g in te.groupby('user_id'):   # each user's test ratings are its latest
        assert g.date.min() >= tr[tr.user_id == u].date.max()


def test_validation_split_never_touches_test(tmp_path):
    d = load_netflix(synth_netflix(tmp_path / 't', 'tiny'))
    v = validation_split(d, 0.1, seed=0)
    assert len(v.train) + len(v.test) == len(d.train) and v.n_users == d.n_users
    assert not set(zip(v.test.user, v.test.movie)) & set(zip(d.test.user, d.test.movie)) - set(zip(d.train.user, d.train.movie))

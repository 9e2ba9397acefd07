"The Netflix Prize layout: the synthetic writer, the fast reader and its cache, their errors and the `data` commands."
import json, os, shutil, subprocess, sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys_nb.data import DataError, read_prize, load_prize, read_prize_probe, check_dataset, PRIZE_COLUMNS
from recsys_nb.synth import synth_prize, synth_prize_ratings, PRIZE_PRESETS, PRIZE_MAX_USER


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    return synth_prize(tmp_path_factory.mktemp('prize') / 'tiny', 'tiny', seed=0)


def movie_lines(d: Path) -> pd.DataFrame:
    "Every (user, movie, rating, date) of training_set/, read the slow, obvious way."
    rows = []
    for f in sorted((d / 'training_set').glob('mv_*.txt')):
        lines = f.read_text().splitlines()
        mid = int(lines[0].rstrip(':'))
        rows += [(int(u), mid, int(r), day) for u, r, day in (l.split(',') for l in lines[1:])]
    return pd.DataFrame(rows, columns=['user_id', 'movie_id', 'rating', 'date'])


def test_layout_and_counts(tiny):
    names = sorted(p.name for p in (tiny / 'training_set').iterdir())
    assert names[0] == 'mv_0000001.txt' and names[-1] == 'mv_0000200.txt' and len(names) == 200
    assert (tiny / 'training_set' / 'mv_0000007.txt').read_text().startswith('7:\n')
    lines = movie_lines(tiny)
    n = PRIZE_PRESETS['tiny']
    assert len(lines) == n['n_ratings'] and lines.user_id.nunique() == n['n_users']
    assert lines.user_id.max() == PRIZE_MAX_USER and not lines.duplicated(['user_id', 'movie_id']).any()
    assert lines.date.min() >= '1998-11-11' and lines.date.max() <= '2005-12-31'
    probe = read_prize_probe(tiny / 'probe.txt')
    assert len(probe) == n['n_probe']
    # the probe is inside training_set/, the qualifying set outside it, both later than each user's other ratings
    keyed = lines.set_index(['user_id', 'movie_id'])
    assert probe.set_index(['user_id', 'movie_id']).index.isin(keyed.index).all()
    qual = [l.split(',') for l in (tiny / 'qualifying.txt').read_text().splitlines() if not l.endswith(':')]
    assert len(qual) == n['n_qualifying']
    titles = (tiny / 'movie_titles.txt').read_bytes()
    assert titles.count(b'\r\n') == 200 and titles.decode('latin-1').startswith('1,')


def test_round_trip(tiny, tmp_path):
    p = read_prize(tiny, cache=tmp_path / 'cache')
    lines = movie_lines(tiny)
    probe = read_prize_probe(tiny / 'probe.txt')
    assert (p.n_users, p.n_movies) == (1_000, 200)
    assert len(p.train['user']) == 40_000 - 1_500 and len(p.test['user']) == 1_500
    assert [p.train[c].dtype for c in PRIZE_COLUMNS] == [np.int32, np.int16, np.int8, np.int16]
    got = pd.concat([pd.DataFrame({'user_id': p.users[a['user']], 'movie_id': p.movies[a['movie']], 'rating': a['rating'],
                                   'date': np.datetime_as_string(np.asarray(a['day']).astype('datetime64[D]')), 'test': part == 'test'})
                     for part, a in (('train', p.train), ('test', p.test))])
    merged = lines.merge(got, on=['user_id', 'movie_id'], how='outer', indicator=True, suffixes=('', '_read'))
    assert (merged._merge == 'both').all()
    assert (merged.rating == merged.rating_read).all() and (merged.date == merged.date_read).all()
    in_probe = merged.set_index(['user_id', 'movie_id']).index.isin(probe.set_index(['user_id', 'movie_id']).index)
    assert (merged.test.to_numpy() == in_probe).all()                     # probe excluded from train, and only it
    u = p.train['user'].astype(np.int64) * p.n_movies + p.train['movie']
    assert (np.diff(u) > 0).all()                                           # sorted by user, then movie
    data = load_prize(tiny, cache=tmp_path / 'cache')
    assert data.train.dtypes.astype(str).tolist() == ['int32', 'int32', 'float32', 'datetime64[s]', 'int32', 'int32']
    assert (len(data.train), len(data.test)) == (38_500, 1_500) and data.titles is not None
    assert data.summary()['problems'] == {}


def test_same_seed_same_bytes(tmp_path):
    a, b = synth_prize(tmp_path / 'a', 'tiny', seed=3), synth_prize(tmp_path / 'b', 'tiny', seed=3)
    files = sorted(p.relative_to(a) for p in a.rglob('*') if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob('*') if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    c = synth_prize(tmp_path / 'c', 'tiny', seed=4)
    assert (c / 'training_set' / 'mv_0000001.txt').read_bytes() != (a / 'training_set' / 'mv_0000001.txt').read_bytes()


def test_refuses_a_full_directory_and_leaves_nothing_half_written(tmp_path, monkeypatch):
    (tmp_path / 'full').mkdir(); (tmp_path / 'full' / 'x').write_text('x')
    with pytest.raises(FileExistsError, match='not an empty directory'):
        synth_prize(tmp_path / 'full', 'tiny')
    import recsys_nb.synth as S
    def boom(*a, **k): raise KeyboardInterrupt
    monkeypatch.setattr(S, '_write_prize', boom)
    with pytest.raises(KeyboardInterrupt):
        S.synth_prize(tmp_path / 'cut', 'tiny')
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith('cut')] == []


def test_cache_hit_and_invalidation(tiny, tmp_path):
    d = tmp_path / 'd'; shutil.copytree(tiny, d)
    first = read_prize(d, cache=tmp_path / 'cache')
    second = read_prize(d, cache=tmp_path / 'cache')
    assert (first.cached, second.cached) == (False, True) and first.cache == second.cache
    assert isinstance(second.train['user'], np.memmap)
    for part in ('train', 'test'):
        for c in PRIZE_COLUMNS: assert np.array_equal(getattr(first, part)[c], getattr(second, part)[c])
    assert not list(Path(second.cache).glob('*.pkl')) and (Path(second.cache) / 'meta.json').exists()
    # a changed file changes the fingerprint: parsed again, the stale cache removed
    f = d / 'training_set' / 'mv_0000001.txt'
    f.write_bytes(f.read_bytes() + f.read_bytes().splitlines(True)[1].replace(b',', b'9,', 1))
    third = read_prize(d, cache=tmp_path / 'cache')
    assert not third.cached and third.cache != second.cache and not Path(second.cache).exists()
    assert len(third.train['user']) + len(third.test['user']) == len(first.train['user']) + len(first.test['user']) + 1
    assert read_prize(d, cache=False).cache is None


def test_default_cache_place(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv('RECSYS_NB_CACHE', str(tmp_path / 'c'))
    read_prize(tiny)
    p = read_prize(tiny)
    assert p.cached and Path(p.cache).parent == tmp_path / 'c' / 'prize'


def broken(tiny, tmp_path, edit):
    d = tmp_path / 'broken'; shutil.copytree(tiny, d); edit(d); return d


def mv(d, i=1): return d / 'training_set' / f'mv_{i:07d}.txt'


def replace_once(path, old, new): path.write_bytes(path.read_bytes().replace(old, new, 1))


@pytest.mark.parametrize('edit,msg', [
    (lambda d: mv(d).write_bytes(mv(d).read_bytes()[:-8]), r"mv_0000001.txt, line \d+: date '\d+' is not YYYY-MM-DD"),
    (lambda d: mv(d).write_bytes(mv(d).read_bytes()[:-12]), r'mv_0000001.txt, line \d+: expected 3 comma-separated fields'),
    (lambda d: replace_once(mv(d), b'1:', b'2:'), 'mv_0000001.txt, line 1: expected the header line `1:`'),
    (lambda d: replace_once(mv(d, 5), b',5,', b',7,'), r'mv_0000005.txt, line \d+: rating 7 outside the scale 1–5'),
    (lambda d: replace_once(mv(d, 5), b',4,', b',x,'), r"mv_0000005.txt, line \d+: rating 'x' is not an integer"),
    (lambda d: replace_once(mv(d, 9), b'\n', b'\n0,3,2005-01-01\n'), "mv_0000009.txt, line 2: user id 0 out of range"),
    (lambda d: replace_once(mv(d, 9), b'\n', b'\n12,3,2005-02-30\n'), "mv_0000009.txt, line 2: date '2005-02-30' is not a valid date"),
    (lambda d: mv(d).write_bytes(mv(d).read_bytes() + mv(d).read_bytes().splitlines(True)[1]), 'already rated this movie on line 2'),
    (lambda d: (d / 'probe.txt').write_text('1:\n6\n'), 'probe.txt, line 2: user 6 has no rating of movie 1 in training_set'),
    (lambda d: (d / 'probe.txt').write_text('1:\nsix\n'), "probe.txt, line 2: user id 'six' is not an integer"),
    (lambda d: shutil.copy(mv(d), d / 'training_set' / 'mv_1.txt'), 'a second file for movie 1'),
    (lambda d: shutil.rmtree(d / 'training_set'), 'training_set: not found'),
])
def test_bad_files_give_one_line_errors(tiny, tmp_path, edit, msg):
    with pytest.raises(DataError, match=msg) as e:
        read_prize(broken(tiny, tmp_path, edit), cache=tmp_path / 'cache')
    assert '\n' not in str(e.value)
    assert not list((tmp_path / 'cache').glob('*')) if (tmp_path / 'cache').exists() else True   # nothing cached


def test_probe_listed_twice(tiny, tmp_path):
    first = (tiny / 'probe.txt').read_text().splitlines()[:2]
    d = broken(tiny, tmp_path, lambda d: (d / 'probe.txt').write_text('\n'.join(first + [first[1]]) + '\n'))
    with pytest.raises(DataError, match=r'probe.txt, line 3: user \d+ and movie 1 already listed on line 2'):
        read_prize(d, cache=False)


def test_blank_lines_and_crlf_are_read(tiny, tmp_path):
    d = broken(tiny, tmp_path, lambda d: mv(d).write_bytes(mv(d).read_bytes().replace(b'\n', b'\r\n') + b'\r\n'))
    p, q = read_prize(d, cache=False), read_prize(tiny, cache=False)
    assert p.report['blank_lines'] == 1
    for c in PRIZE_COLUMNS: assert np.array_equal(p.train[c], q.train[c])


def test_a_movie_without_ratings(tiny, tmp_path):
    d = broken(tiny, tmp_path, lambda d: (d / 'training_set' / 'mv_0000201.txt').write_text('201:\n'))
    p = read_prize(d, cache=False)
    assert p.n_movies == 201 and p.report['movies_without_ratings'] == 1 and len(p.train['user']) == 38_500


def test_mf_takes_it(tiny, tmp_path):
    from recsys_nb.mf import MF, MFData
    p = read_prize(tiny, cache=False)
    md = MFData(p.n_users, p.n_movies, p.triples('train'), p.triples('test'))
    assert md.n_train == 38_500 and md.test is not None
    m = MF('sparse', 'torch', k=4, max_epochs=2, progress=False, device='cpu').fit(p.rating_data())
    assert np.isfinite(m.test(p.rating_data())['rmse'])


def test_synth_prize_ratings_shape_and_structure():
    r = synth_prize_ratings(**PRIZE_PRESETS['small'], seed=0)
    kind = np.bincount(r['kind'])
    assert kind.tolist() == [2_000_000 - 28_000, 28_000, 56_000]
    rating = r['rating'].astype(float)
    assert 3.45 < rating[r['kind'] != 2].mean() < 3.7
    t, u, m = r['truth'], r['user'], r['movie']
    truth = np.clip(t['mu'] + t['b_u'][u] + t['b_i'][m] + np.einsum('nk,nk->n', t['P'][u], t['Q'][m]), 1, 5)
    pr = r['kind'] == 1
    assert np.sqrt(np.mean((rating[pr] - truth[pr]) ** 2)) < np.sqrt(np.mean((rating[pr] - rating[r['kind'] == 0].mean()) ** 2)) - 0.2


def cli(*args, env=None):
    return subprocess.run([sys.executable, '-m', 'recsys_nb.cli', *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})


def test_cli_synth_and_check(tmp_path):
    r = cli('data', 'synth', 'prize', '--size', 'tiny', '--out', tmp_path / 'p', '--json')
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out['size'] == 'tiny' and set(out['files']) == {'movie_titles.txt', 'probe.txt', 'qualifying.txt', 'training_set/'}
    r = cli('data', 'check', tmp_path / 'p', '--json', env={'RECSYS_NB_CACHE': str(tmp_path / 'cache')})
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert (s['users'], s['movies'], s['train_ratings'], s['test_ratings']) == (1_000, 200, 38_500, 1_500)
    replace_once(mv(tmp_path / 'p', 3), b',', b',,')
    r = cli('data', 'check', tmp_path / 'p', '--no-progress', env={'RECSYS_NB_CACHE': str(tmp_path / 'cache')})
    assert r.returncode == 2 and r.stderr.count('\n') == 1 and 'mv_0000003.txt, line 2: expected 3 comma-separated fields' in r.stderr
    r = cli('data', 'synth', 'prize', '--size', 'tiny', '--out', tmp_path / 'p')
    assert r.returncode == 2 and 'exists and is not an empty directory' in r.stderr
    r = cli('data', 'synth', 'prize', '--size', 'netflix', '--out', tmp_path / 'q')
    assert r.returncode == 2 and "--size of prize must be one of tiny, small, prize, not 'netflix'" in r.stderr


def test_mf_command_trains_on_training_minus_probe(tmp_path):
    d = synth_prize(tmp_path / 'pz', 'tiny', seed=0)
    env = {**os.environ, 'RECSYS_NB_CACHE': str(tmp_path / 'cache')}
    r = subprocess.run([sys.executable, '-m', 'recsys_nb.cli', 'mf', '--prize', str(d), '--max-epochs', '2', '--no-progress',
                        '--json'], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout)
    p = read_prize(d, cache=False)
    assert out['epochs'] == 2 and out['seconds_per_epoch'] > 0 and out['test_rmse'] < 2
    assert f"{len(p.train['rating']):,} train / {len(p.test['rating']):,} test" in r.stderr   # training minus probe
    assert 'mv_*.txt' not in r.stderr and '%|' not in r.stderr                                 # --no-progress: no bar, reading included
    r = subprocess.run([sys.executable, '-m', 'recsys_nb.cli', 'mf', '--prize', str(d), '--data', str(d)],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 2 and 'not both' in r.stderr

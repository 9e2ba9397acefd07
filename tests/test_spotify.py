"Spotify MPD experiment: reader errors, generator determinism, records, resumption, the `spotify` commands."
import copy, json, subprocess, sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from recsys_nb.data import DataError
from recsys_nb.spotify import (MPDError, MPD_SYNTH_PRESETS, PlaylistRecords, RECORD_FIELDS, SpotifyConfig, check_playlist,
                               iter_playlists, is_test_slice, load_all_tracks, load_dicts, load_records, prepare_records,
                               read_slice, slice_files, synth_mpd, train_spotify, THEMES)

# the dispatcher, with the `spotify` entry added if the command table does not list it yet
CLI = ("import sys; from recsys_nb import cli; "
       "cli.COMMANDS.setdefault('spotify', ('recsys_nb.spotify', 'Spotify')); sys.exit(cli.main(sys.argv[1:]))")


def cli(*args):
    return subprocess.run([sys.executable, '-c', CLI, *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    return synth_mpd(tmp_path_factory.mktemp('mpd') / 'tiny', 'tiny', seed=0)


@pytest.fixture(scope='module')
def prepared(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp('prep')
    prepare_records(tiny, out)
    return out


TRACK = {'pos': 0, 'artist_name': 'A', 'track_uri': 'spotify:track:t0', 'artist_uri': 'spotify:artist:a0',
         'track_name': 'T', 'album_uri': 'spotify:album:b0', 'duration_ms': 1000, 'album_name': 'B'}


def playlist(pid, n=12):
    tracks = [dict(TRACK, pos=i, track_uri=f'spotify:track:t{pid}_{i}') for i in range(n)]
    return {'name': 'x', 'collaborative': 'false', 'pid': pid, 'modified_at': 0, 'num_tracks': n, 'num_albums': 1,
            'num_followers': 1, 'tracks': tracks}


def write(d, name, playlists=None, text=None):
    p = Path(d) / name
    p.write_text(text if text is not None else json.dumps({'info': {}, 'playlists': playlists}))
    return p


# ---------------------------------------------------------------- reader errors
@pytest.mark.parametrize('edit,msg', [
    (lambda pl: pl.pop('num_tracks'), "'num_tracks' is missing"),
    (lambda pl: pl.update(num_followers='1'), "'num_followers' is str '1', expected int"),
    (lambda pl: pl.update(num_tracks=11), 'num_tracks is 11 but the playlist has 12 tracks'),
    (lambda pl: pl['tracks'][4].pop('album_uri'), "track 4: 'album_uri' is missing"),
    (lambda pl: pl['tracks'][4].update(pos=7), 'track 4: pos is 7, expected 4'),
    (lambda pl: pl['tracks'][2].update(track_uri='spotify:track:'), "track 2: track_uri 'spotify:track:' has an empty id"),
    (lambda pl: pl['tracks'].__setitem__(3, [1, 2]), 'track 3 is a list, not an object'),
    (lambda pl: pl.update(collaborative='no'), "'collaborative' is 'no', expected 'true' or 'false'"),
])
def test_reader_names_file_playlist_pid_and_problem(tmp_path, edit, msg):
    pls = [playlist(1000), playlist(1001), playlist(1002)]
    edit(pls[2])
    write(tmp_path, 'mpd.slice.1000-1999.json', pls)
    with pytest.raises(MPDError) as e:
        list(iter_playlists(tmp_path))
    assert isinstance(e.value, DataError)
    assert str(e.value) == f'{tmp_path / "mpd.slice.1000-1999.json"}, playlist 2 (pid 1002): {msg}'
    assert e.value.playlist == 2 and e.value.pid == 1002


def test_reader_file_level_errors(tmp_path):
    p = write(tmp_path, 'mpd.slice.0-999.json', text='{"info": {},\n "playlists": [\n {"pid": 0,, }]}')
    with pytest.raises(MPDError, match=r'mpd.slice.0-999.json, line 3: invalid JSON'):
        read_slice(p)
    p = write(tmp_path, 'mpd.slice.0-999.json', text='[1, 2]')
    with pytest.raises(MPDError, match='top level is a list'):
        read_slice(p)
    p = write(tmp_path, 'mpd.slice.0-999.json', text='{"info": {}}')
    with pytest.raises(MPDError, match="no 'playlists' list"):
        read_slice(p)
    (tmp_path / 'mpd.slice.0-999.json').write_bytes(b'{"info": "\xff"}')
    with pytest.raises(MPDError, match='not UTF-8'):
        read_slice(tmp_path / 'mpd.slice.0-999.json')
    with pytest.raises(MPDError, match='not an MPD slice file name'):
        slice_files(write(tmp_path, 'playlists.json', []))
    with pytest.raises(MPDError, match='no MPD slice files'):
        slice_files(tmp_path / 'empty')


def test_slice_order_and_test_rule(tmp_path):
    for a in (10000, 2000, 0, 9000, 19000):
        write(tmp_path, f'mpd.slice.{a}-{a + 999}.json', [])
    files = slice_files(tmp_path)
    assert [f.name for f in files] == ['mpd.slice.0-999.json', 'mpd.slice.2000-2999.json', 'mpd.slice.9000-9999.json',
                                       'mpd.slice.10000-10999.json', 'mpd.slice.19000-19999.json']
    assert [is_test_slice(f) for f in files] == [False, False, True, False, True]
    assert slice_files(str(tmp_path / 'mpd.slice.1*.json')) == files[3:]        # a glob
    (tmp_path / 'data').mkdir()
    assert slice_files(tmp_path) == files                                         # slices found before data/


# ---------------------------------------------------------------- generator
def test_generator_is_deterministic_and_valid(tiny, tmp_path):
    again = synth_mpd(tmp_path / 'again', 'tiny', seed=0)
    other = synth_mpd(tmp_path / 'other', 'tiny', seed=1)
    files = slice_files(tiny)
    assert len(files) == 10 and sum(map(is_test_slice, files)) == 1
    for f in files:
        assert (again / 'data' / f.name).read_bytes() == f.read_bytes()
    assert (other / 'data' / files[0].name).read_bytes() != files[0].read_bytes()
    pls = [pl for _, _, pl in iter_playlists(tiny)]            # every playlist passes the reader's checks
    assert len(pls) == 400 and [pl['pid'] for pl in pls] == list(range(400))
    words = {w for ws in THEMES.values() for w in ws}
    assert all(any(w in pl['name'].lower() for w in words) for pl in pls)
    assert all(5 <= pl['num_tracks'] <= 250 for pl in pls)
    assert all(pl['num_albums'] == len({t['album_uri'] for t in pl['tracks']}) for pl in pls)


def test_default_preset_size():
    cfg = MPD_SYNTH_PRESETS['default']
    assert cfg.n_slices >= 10 and cfg.playlists_per_slice == 1000


def test_playlists_come_from_few_themes(tiny):
    "Artists of a playlist concentrate: the most frequent artist holds a large share of a typical playlist."
    shares = []
    for _, _, pl in iter_playlists(tiny):
        arts = [t['artist_uri'] for t in pl['tracks']]
        shares.append(max(arts.count(a) for a in set(arts)) / len(arts))
    assert np.median(shares) > 0.15


# ---------------------------------------------------------------- records
def test_records_roundtrip(tiny, prepared):
    rep = json.loads((prepared / 'prepare.json').read_text())
    pls = [pl for _, _, pl in iter_playlists(tiny)]
    assert rep['skipped'] == sum(pl['num_tracks'] < 10 for pl in pls)
    assert rep['records'] == len(pls) - rep['skipped']
    recs, dicts, at = load_records(prepared, 'all'), load_dicts(prepared), load_all_tracks(prepared)
    inv = {f: {v: k for k, v in d.items()} for f, d in dicts.items()}
    kept = [pl for pl in pls if pl['num_tracks'] >= 10]
    for i in (0, 57, len(kept) - 1):
        pl = kept[i]
        assert recs.pid[i] == pl['pid']
        for f in RECORD_FIELDS:
            assert [inv[f][x] for x in recs.context[f][i]] == [t[f + '_uri'] for t in pl['tracks'][:5]]
            assert [inv[f][x] for x in recs.next_of(i, f)] == [t[f + '_uri'] for t in pl['tracks'][5:]]
    assert len(at) == len(dicts['track']) and at.track.tolist() == list(range(len(at)))
    assert (at.album.values[recs.next['track']] == recs.next['album']).all()
    test = load_records(prepared, 'test')
    assert set(test.slice.tolist()) == {9} and len(test) + len(load_records(prepared, 'train')) == len(recs)


def test_prepare_validates_arguments_and_reports_missing_splits(tmp_path):
    write(tmp_path, 'mpd.slice.0-999.json', [playlist(0), playlist(1, n=6)])
    with pytest.raises(ValueError, match='topk < min_next'):
        prepare_records(tmp_path, tmp_path / 'p', topk=10, min_next=10)
    rep = prepare_records(tmp_path, tmp_path / 'p')
    assert rep['records'] == 1 and rep['skipped'] == 1
    with pytest.raises(DataError, match='no test slices'):
        load_records(tmp_path / 'p', 'test')


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=1, max_size=8), st.data())
def test_ragged_records_properties(lengths, data):
    n = len(lengths)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    flat = np.arange(offsets[-1], dtype=np.int32)
    rec = PlaylistRecords(np.arange(n), np.zeros(n, np.int32), {f: np.zeros((n, 5), np.int32) for f in RECORD_FIELDS},
                          offsets, {f: flat + k for k, f in enumerate(RECORD_FIELDS)})
    idx = data.draw(st.lists(st.integers(0, n - 1), max_size=10))
    sub = rec.take(idx)
    assert [sub.next_of(j).tolist() for j in range(len(idx))] == [rec.next_of(i).tolist() for i in idx]
    both = PlaylistRecords.concat([rec, sub]) if idx else rec
    assert [both.next_of(j, 'album').tolist() for j in range(len(both))] == \
        [rec.next_of(i, 'album').tolist() for i in list(range(n)) + (idx if idx else [])]
    padded, mask = rec.padded_next()
    assert (mask.sum(1) == lengths).all()
    assert [padded['track'][i][mask[i]].tolist() for i in range(n)] == [rec.next_of(i).tolist() for i in range(n)]


# ---------------------------------------------------------------- training
def test_resume_gives_the_same_model_as_one_run(prepared, tmp_path):
    cfg = lambda steps: SpotifyConfig(steps=steps, log_every=20, eval_every=0, feature_size=8, batch_size=8)
    straight = train_spotify(prepared, cfg(60), baselines=False, progress=False)
    train_spotify(prepared, cfg(40), workdir=tmp_path, baselines=False, progress=False)
    resumed = train_spotify(prepared, cfg(60), workdir=tmp_path, baselines=False, progress=False)
    assert resumed.info['resumed_from'] == 2
    a, b = straight.history.df, resumed.history.df
    assert np.allclose(a.loss.values, b.loss.values, rtol=1e-5)
    assert np.isclose(straight.metrics['ndcg'], resumed.metrics['ndcg'], rtol=1e-5)


def test_same_seed_same_numbers(prepared):
    cfg = SpotifyConfig(steps=20, log_every=10, eval_every=0, feature_size=8, batch_size=8)
    a = train_spotify(prepared, cfg, progress=False).metrics
    b = train_spotify(prepared, cfg, progress=False).metrics
    assert {k: v for k, v in a.items() if k != 'train_seconds'} == {k: v for k, v in b.items() if k != 'train_seconds'}


# ---------------------------------------------------------------- command line
def test_cli_synth_and_train(tmp_path):
    r = cli('spotify', 'synth', '--out', tmp_path / 'mpd', '--preset', 'tiny', '--json')
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out['slices'] == 10 and out['test_slices'] == ['mpd.slice.360-399.json']
    r = cli('spotify', 'train', '--data', tmp_path / 'mpd', '--out', tmp_path / 'run', '--steps', '30',
            '--eval-every', '0', '--drop-loss', 'norm_cap', '--optimizer', 'adam', '--json')
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    for k in ('track_recall_at_500', 'artist_recall_at_500', 'ndcg', 'r_precision', 'clicks'):
        assert k in res and f'popularity_{k}' in res
        if k != 'clicks': assert 0 <= res[k] <= 1 and 0 <= res[f'popularity_{k}'] <= 1
    assert res['steps'] == 30 and 'norm_cap' not in res['config']['losses'] and res['config']['optimizer'] == 'adam'
    assert res['skipped'] + res['n_train'] + res['n_test'] == res['playlists'] == 400
    assert (tmp_path / 'run' / 'history.json').exists() and (tmp_path / 'run' / 'results.json').exists()


def test_cli_reports_a_malformed_slice(tmp_path):
    pls = [playlist(0), playlist(1)]
    pls[1]['tracks'][3]['artist_uri'] = 42
    write(tmp_path, 'mpd.slice.0-999.json', pls)
    r = cli('spotify', 'prepare', '--data', tmp_path, '--out', tmp_path / 'p')
    assert r.returncode == 2
    assert "mpd.slice.0-999.json, playlist 1 (pid 1): track 3: 'artist_uri' is int 42, expected str" in r.stderr


def test_step_compiles_once(prepared):
    "Padding and masks keep every batch the same shape: the jitted step is traced once."
    import jax
    from flax import nnx
    from recsys_nb.spotify import BatchSampler, SpotifyModel, make_train_step
    rep = json.loads((prepared / 'prepare.json').read_text())
    cfg = SpotifyConfig(feature_size=8, batch_size=8, max_next=16)
    model = SpotifyModel(rep['n_albums'], rep['n_artists'], cfg.feature_size, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split((model, nnx.Optimizer(model, cfg.optax(), wrt=nnx.Param)))
    at = load_all_tracks(prepared)
    step = make_train_step(graphdef, cfg, at.album.values, at.artist.values)
    sampler = BatchSampler(load_records(prepared, 'train'), cfg.batch_size, cfg.max_next)
    lengths = set()
    for i in range(6):
        b = sampler()
        lengths.add(int(b['next_mask'].sum()))
        state, m = step(state, b, jax.random.PRNGKey(i))
    assert len(lengths) > 1 and step._cache_size() == 1


def test_cli_refuses_to_mix_runs(tmp_path, tiny):
    args = ('spotify', 'train', '--data', tiny, '--out', tmp_path, '--steps', '10', '--eval-every', '0', '--no-baselines')
    assert cli(*args).returncode == 0
    r = cli(*args, '--learning-rate', '0.5')
    assert r.returncode == 2 and 'other settings or data (learning_rate)' in r.stderr and 'Traceback' not in r.stderr
    assert cli(*args, '--learning-rate', '0.5', '--fresh').returncode == 0
    other = synth_mpd(tmp_path / 'other', 'tiny', seed=1)                 # the same settings on other data: refused too
    r = cli('spotify', 'train', '--data', other, *args[4:], '--learning-rate', '0.5')
    assert r.returncode == 2 and 'other settings or data (data)' in r.stderr and 'Traceback' not in r.stderr

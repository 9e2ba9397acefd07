"""Hostile inputs, one test per defect the probe (`benchmarks/hostile_inputs.py`) found: each is now a one-line error
naming the file and the line (exit 2 from the command line), or a file written exactly where it was asked."""
import json, sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys_nb.data import QUOTE_CHARS, DataError, load_movielens, load_ratings, read_ratings, read_users

NF = '1 10 3 2005-01-01\n2 10 4 2005-01-02\n{}\n4 10 4 2005-01-02\n'          # the bad line is line 3
ML = '1\t10\t3\t881250949\n2\t10\t4\t881250950\n{}\n4\t10\t4\t881250951\n'


def _err(path, **kw) -> DataError:
    with pytest.raises(DataError) as e: read_ratings(path, **kw)
    return e.value


@pytest.mark.parametrize('name,text,problem', [
    ('netflix_train.txt', NF.format('3 10 3.5 2005-01-03'), 'rating 3.5 is not a multiple of 1 (whole stars'),
    ('u.data', ML.format('3\t10\t3.5\t881250951'), 'rating 3.5 is not a multiple of 1'),
    ('netflix_train.txt', NF.format('3 10 3 0001-01-01'), 'date 0001-01-01 outside 1900-01-01..2059-12-31'),
    ('netflix_train.txt', NF.format('3 10 3 2999-12-31'), 'outside 1900-01-01..2059-12-31'),
    ('u.data', ML.format('3\t10\t3\t99999999999999999'), 'outside 1900-01-01..2059-12-31'),
    ('netflix_train.txt', NF.format('+7255 10 3 2005-01-03'), "user id '+7255' has a + sign"),
    ('netflix_train.txt', NF.format(f'{2**64} 10 3 2005-01-03'), f'user id {2**64} is outside the 64-bit range'),
    ('netflix_train.txt', NF.format('3 10 3\r2005-01-03'), 'a carriage return'),
])
def test_bad_values_name_their_line(tmp_path, name, text, problem):
    p = tmp_path / name
    p.write_text(text, newline='')
    e = _err(p)
    assert e.line == 3 and problem in str(e), str(e)


def test_half_stars_are_fine_where_the_format_has_them(tmp_path):
    p = tmp_path / 'ratings.csv'
    p.write_text('userId,movieId,rating,timestamp\n1,10,3.5,881250949\n2,10,0.5,881250950\n')
    assert read_ratings(p, rating_scale=(0.5, 5)).rating.tolist() == [3.5, 0.5]


def test_a_tab_in_a_double_colon_file(tmp_path):
    p = tmp_path / 'ratings.dat'
    p.write_text('1::10::3::881250949\n2::10::4::881250950\n3\t10\t4\t881250951\n')
    e = _err(p)
    assert e.line == 3 and "a tab in a '::'-separated file" in str(e)


def test_long_lines_are_quoted_short(tmp_path):
    p = tmp_path / 'netflix_train.txt'
    p.write_text(NF.format('7255 40 3 ' + '9' * 1_000_000))
    e = _err(p)
    assert e.line == 3 and len(str(e)) < len(str(p)) + 2 * QUOTE_CHARS + 200 and '1,000,010 characters' in str(e)


@pytest.mark.parametrize('text', ['', '\n  \n', 'userId,movieId,rating,timestamp\n'])
def test_a_file_without_ratings_is_an_error(tmp_path, text):
    "One rule for train and test files: no ratings (empty, blank or header only) is an error."
    p = tmp_path / 'ratings.csv'
    p.write_text(text)
    with pytest.raises(DataError, match='empty|no ratings'): read_ratings(p, 'ml-latest', rating_scale=(0.5, 5))
    good = tmp_path / 'train.csv'
    good.write_text('userId,movieId,rating,timestamp\n1,10,3.5,881250949\n')
    with pytest.raises(DataError): load_ratings(good, p)
    with pytest.raises(DataError): load_ratings(p, good)


def test_users_file_ids_beyond_64_bits(tmp_path):
    p = tmp_path / 'users.txt'
    p.write_text(f'1\n2\n{2**63}\n')
    with pytest.raises(DataError, match=r'users.txt, line 3: user id 9223372036854775808 is outside the 64-bit range'):
        read_users(p)


def test_a_folder_without_ratings_names_both_formats(tmp_path):
    with pytest.raises(DataError, match='MovieLens needs u.data.*netflix_train.txt'): load_movielens(tmp_path)


# --- Spotify's Million Playlist format ------------------------------------------------------------------------------
def _slice(tmp_path, edit, name='mpd.slice.0-9.json'):
    from recsys_nb.spotify import read_slice
    track = lambda i: {'pos': i, 'artist_name': 'A', 'track_uri': f'spotify:track:t{i}', 'artist_uri': 'spotify:artist:a',
                       'track_name': 'T', 'album_uri': 'spotify:album:b', 'duration_ms': 1000, 'album_name': 'B'}
    pl = {'name': 'p', 'collaborative': 'false', 'pid': 3, 'modified_at': 1, 'num_tracks': 3, 'num_albums': 1,
          'num_followers': 1, 'tracks': [track(i) for i in range(3)]}
    edit(pl)
    p = tmp_path / name
    p.write_text(json.dumps({'info': {}, 'playlists': [pl]}))
    return lambda: read_slice(p)


@pytest.mark.parametrize('edit,problem', [
    (lambda pl: pl['tracks'][1].update(duration_ms='253434'), "track 1: 'duration_ms' is str"),
    (lambda pl: pl['tracks'][0].update(track_name=12345), "track 0: 'track_name' is int"),
    (lambda pl: pl['tracks'][1].update(artist_name=None), "track 1: 'artist_name' is null"),
    (lambda pl: pl['tracks'][1].update(pos=True), "track 1: 'pos' is bool"),
    (lambda pl: pl.update(pid=5000), "pid 5000 is outside the file's range 0-9"),
])
def test_playlists_are_checked_track_by_track(tmp_path, edit, problem):
    from recsys_nb.spotify import MPDError
    read = _slice(tmp_path, edit)
    with pytest.raises(MPDError, match='playlist 0') as e: read()
    assert problem in str(e.value), str(e.value)


def test_a_valid_slice_reads(tmp_path):
    assert len(_slice(tmp_path, lambda pl: None)()['playlists']) == 1


# --- Shop the Look ----------------------------------------------------------------------------------------------------
SIG = 'a' * 32


def test_stl_files_that_are_not_utf8(tmp_path):
    from recsys_nb.stl_data import read_catalog, read_pairs
    pairs = tmp_path / 'fashion.json'
    line = json.dumps({'scene': SIG, 'product': 'b' * 32, 'bbox': [0.1, 0.1, 0.5, 0.5]})
    pairs.write_bytes((line + '\n' + line.replace('"scene"', '"sc\xe9ne"') + '\n').encode('latin-1'))
    with pytest.raises(DataError, match=r'fashion.json, line 2: not UTF-8 text \(byte 0xe9\)'): read_pairs(pairs)
    cat = tmp_path / 'fashion-cat.json'
    cat.write_bytes(b'{\n"' + SIG.encode() + b'": "Sh\xe9es|Boots"\n}')
    with pytest.raises(DataError, match=r'fashion-cat.json, line 2: not UTF-8 text'): read_catalog(cat)


def test_an_unreadable_image_is_named(tmp_path):
    from PIL import Image
    from recsys_nb.stl_model import decode_image
    p = tmp_path / f'{SIG}.jpg'
    Image.new('RGB', (32, 32), 'red').save(p)
    p.write_bytes(p.read_bytes()[:200])                                   # truncated
    with pytest.raises(DataError, match=rf'{SIG}.jpg: not a readable image'): decode_image(p)


def test_training_without_usable_pairs_names_the_pair_file(tmp_path):
    from recsys_nb.stl import train_stl
    from recsys_nb.stl_data import load_stl
    from recsys_nb.stl_synth import synth_stl
    d = synth_stl(tmp_path / 'stl', 'tiny', seed=0)
    for f in (Path(d) / 'images').iterdir(): f.unlink()
    data = load_stl(d)
    with pytest.raises(DataError, match=r'fashion.json: no usable pairs to train on: \d+ read'): train_stl(data, progress=False)


# --- the search's storage --------------------------------------------------------------------------------------------
@pytest.mark.parametrize('name', ['a?b.db', 'x%41.db', 'c#d.db'])
def test_sqlite_paths_are_paths_not_urls(tmp_path, name):
    "A storage path with '?', '%' or '#' names that very file (SQLAlchemy would read them as URL syntax)."
    import optuna
    from recsys_nb.tuning import open_storage
    optuna.create_study(storage=open_storage(tmp_path / name), study_name='s')
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_spotify_preparation_sees_an_edit_of_the_same_size_and_second(tmp_path):
    "The prepared records are keyed on the slices' bytes: an edit that keeps the size and the modification time is seen."
    import os
    from recsys_nb.spotify import prepare_records, synth_mpd
    d = synth_mpd(tmp_path / 'mpd', 'tiny', seed=0)
    first = prepare_records(d / 'data', tmp_path / 'prep')
    f = sorted((d / 'data').glob('mpd.slice.*.json'))[0]
    st, raw = f.stat(), f.read_bytes()
    i = raw.index(b'"name": "') + len(b'"name": "')
    f.write_bytes(raw[:i] + (b'X' if raw[i:i + 1] != b'X' else b'Y') + raw[i + 1:])        # one byte of a playlist name
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert f.stat().st_size == st.st_size and f.stat().st_mtime_ns == st.st_mtime_ns
    second = prepare_records(d / 'data', tmp_path / 'prep')
    assert second['signature'] != first['signature']
    assert prepare_records(d / 'data', tmp_path / 'prep')['signature'] == second['signature']   # and unchanged data is reused


def test_users_file_ids_follow_the_ratings_rule(tmp_path):
    p = tmp_path / 'users.txt'
    p.write_text('1\n-5\n')
    with pytest.raises(DataError, match=r'users.txt, line 2: user id -5 out of range 1..2\^31-1'): read_users(p)


def test_titles_mixing_utf8_and_latin1_lines_decode_each_line_and_say_so(tmp_path):
    from recsys_nb.data import read_movie_titles
    p = tmp_path / 'movie_titles.txt'
    p.write_bytes('1,2001,Amélie\n'.encode('utf-8') + '2,1998,Café\n'.encode('latin-1') + b'3,2000,Plain\n')
    df = read_movie_titles(p)
    assert df.title.tolist() == ['Amélie', 'Café', 'Plain']                       # no mojibake ('AmÃ©lie')
    assert df.attrs['encoding'] == 'mixed: 1 line utf-8, the others latin-1'


@pytest.mark.parametrize('command', [['usercf'], ['mf', '--max-epochs', '1', '--no-progress']])
def test_json_results_carry_what_loading_counted(tmp_path, capsys, command):
    "Duplicates and unseen ids are in the `--json` result, not only on stderr."
    import shutil
    from recsys_nb.cli import main
    from recsys_nb.synth import synth_netflix
    d = Path(shutil.copytree(synth_netflix(tmp_path / 'src', 'tiny', seed=0), tmp_path / 'nf'))
    train = d / 'netflix_train.txt'
    train.write_text(train.read_text() + train.read_text().splitlines()[0] + '\n')        # one duplicate pair
    assert main([*command, '--data', str(d), '--json']) == 0
    res = json.loads(capsys.readouterr().out)
    assert res['data']['train_duplicates'] == 1 and 'test_ratings_with_unseen_ids' in res['data']


def test_a_full_disk_leaves_no_half_written_dataset_file(tmp_path, monkeypatch):
    "Synthetic datasets are written into a temporary folder moved into place at the end: a write that fails (ENOSPC) leaves nothing."
    import errno, os
    import pyarrow.csv as pacsv
    from recsys_nb.synth import synth_netflix
    real = pacsv.write_csv
    def full(table, sink, **kw):
        real(table.slice(0, 10), sink, **kw)                               # some bytes reach the disk...
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))             # ...then it is full
    monkeypatch.setattr(pacsv, 'write_csv', full)
    with pytest.raises(OSError, match='No space left'): synth_netflix(tmp_path / 'nf', 'tiny', seed=0)
    assert list(tmp_path.iterdir()) == []                                  # no 'nf', no temporary folder: all or nothing


def test_outputs_into_a_read_only_folder_or_onto_a_full_disk():
    """The probe's output cases, run for real: into a mode-555 folder (as root too: the commands then run without root's
    override of file modes) and onto a full disk (a file-size limit, so it runs anywhere): each is a one-line error
    naming the file or folder (exit 2), no traceback, no half-written file, and a data set is written whole or not at all."""
    import subprocess
    root = Path(__file__).resolve().parents[1]
    only = ['readonly.', 'disk_full.data_synth', 'disk_full.spotify', 'disk_full.stl_random', 'disk_full.tune']   # not `run` (13 s)
    out = subprocess.run([sys.executable, str(root / 'benchmarks' / 'hostile_inputs.py'), *(a for o in only for a in ('--only', o)),
                          '--json', '--python', sys.executable], capture_output=True, text=True, timeout=900, cwd=root)
    results = json.loads(out.stdout)
    assert len(results) == 11, out.stderr[-3000:]
    assert {r['name']: r['verdict'] for r in results if r['verdict'] != 'OK'} == {}, out.stderr[-3000:]

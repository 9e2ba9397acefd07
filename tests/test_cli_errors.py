"""Anticipated errors of the `recsys-nb` commands: one line on stderr, exit status 2, no traceback, and before the work
when the problem is an output path; Ctrl-C saves and exits 130; a broken results file is named, not a JSONDecodeError."""
import json, os, signal, subprocess, sys, time
from pathlib import Path

import pytest

from recsys_nb.synth import synth_netflix

ENV = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'CUDA_VISIBLE_DEVICES': ''}


def cli(*args, cwd=None, timeout=600):
    return subprocess.run([sys.executable, '-m', 'recsys_nb.cli', *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=ENV, timeout=timeout)


def one_line_error(r, *contains):
    "Exit 2, no traceback, the last line of stderr says the problem."
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert 'Traceback' not in r.stderr, r.stderr[-2000:]
    last = r.stderr.strip().splitlines()[-1]
    for c in contains: assert c in last, last
    return last


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    return synth_netflix(tmp_path_factory.mktemp('nf') / 'tiny', 'tiny', seed=0)


def test_missing_input(tmp_path):
    one_line_error(cli('data', 'check', tmp_path / 'none'), 'none', 'not found')


def test_directory_given_as_a_ratings_file(tmp_path):
    d = tmp_path / 'netflix_train.txt'; d.mkdir()
    one_line_error(cli('usercf', '--train', d), 'netflix_train.txt', 'Is a directory')


def test_unwritable_history_fails_before_training(tmp_path, tiny):
    (tmp_path / 'afile').write_text('x')
    r = cli('mf', '--data', tiny, '--history', tmp_path / 'afile' / 'sub' / 'h.csv')
    one_line_error(r, '--history', 'cannot create its directory')
    assert '[mf]' not in r.stderr                                   # the data was not even loaded
    one_line_error(cli('mf', '--data', tiny, '--history', tmp_path), 'is a directory')


def test_history_is_written(tmp_path, tiny):
    h = tmp_path / 'new' / 'dir' / 'h.csv'
    r = cli('mf', '--data', tiny, '--max-epochs', '3', '--tol', '0', '--history', h, '--no-progress', '--json')
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout)['history_csv'] == str(h) and len(h.read_text().splitlines()) == 4


def test_broken_results_file_is_named(tmp_path):
    out = tmp_path / 'run'; out.mkdir()
    (out / 'results.json').write_text('')                           # what a full disk used to leave behind
    one_line_error(cli('run', '--size', 'tiny', '--out', out, '--stages', 'data', '--no-progress'),
                   'results.json', 'not a results file')


def test_ctrl_c_saves_and_exits_130(tmp_path, tiny):
    ck = tmp_path / 'ck'
    p = subprocess.Popen([sys.executable, '-m', 'recsys_nb.cli', 'mf', '--data', str(tiny), '--mode', 'dense', '--tol', '0',
                          '--max-epochs', '1000000', '--checkpoint-dir', str(ck), '--checkpoint-every', '5', '--json'],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    t0 = time.time()
    while not (ck.exists() and any(ck.iterdir())) and time.time() - t0 < 300 and p.poll() is None: time.sleep(0.2)
    assert p.poll() is None, p.communicate()[1][-2000:]
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, err[-2000:]
    res = json.loads(out)
    assert res['stopped'] == 'interrupted' and res['epochs'] > 0   # the result of the epochs done is still printed
    assert 'Traceback' not in err


def test_main_job_with_an_unusable_study_storage(tmp_path):
    (tmp_path / 'db').mkdir()
    one_line_error(cli('run', '--size', 'tiny', '--out', tmp_path / 'run', '--stages', 'tune', '--storage', tmp_path / 'db',
                       '--no-progress'), 'recsys-nb run: error')


@pytest.mark.parametrize('preset', [None, '1'])
def test_console_sets_up_the_process(preset):
    "The console script turns NumPy's huge pages off unless the user set them, runs `main` and exits with its status."
    env = {k: v for k, v in ENV.items() if k != 'NUMPY_MADVISE_HUGEPAGE'} | ({'NUMPY_MADVISE_HUGEPAGE': preset} if preset else {})
    code = ("import os, sys, gc, recsys_nb.cli as c\n"
            "c.main = lambda: print(os.environ['NUMPY_MADVISE_HUGEPAGE'], 'numpy' in sys.modules) or 3\n"
            "c.console()")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 3, r.stderr
    assert r.stdout.split() == [preset or '0', 'False']      # set before NumPy is first imported

"""Multi-process behaviour of `recsys-nb tune`: resume after a kill, several workers on one study."""
import json, os, signal, subprocess, sys, time
from pathlib import Path

import optuna
import pytest

from recsys_nb.data import synth_netflix
from recsys_nb.tuning import open_storage, trial_counts

EPOCHS = '15'


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    return synth_netflix(tmp_path_factory.mktemp('data') / 'tiny', 'tiny', seed=0)


def _cmd(data, storage, trials, *extra):
    return [sys.executable, '-m', 'recsys_nb.cli', 'tune', '--data', str(data), '--trials', str(trials),
            '--storage', str(storage), '--epochs', EPOCHS, '--device', 'cpu', '--json', *extra]


def _env():
    return {**os.environ, 'JAX_PLATFORMS': 'cpu', 'CUDA_VISIBLE_DEVICES': '', 'XLA_PYTHON_CLIENT_PREALLOCATE': 'false'}


def _run(cmd, timeout=600) -> dict:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env())
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _study(storage, name='mf'):
    return optuna.load_study(study_name=name, storage=open_storage(storage))


def _counts(storage) -> dict:
    try: return trial_counts(_study(storage))
    except KeyError: return {'finished': 0, 'running': 0}


def test_resume_after_kill(tiny, tmp_path):
    "Kill a search mid-way; the restarted search keeps the finished trials and reaches the target count."
    storage = tmp_path / 'study.db'
    p = subprocess.Popen(_cmd(tiny, storage, 8), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env())
    try:
        deadline = time.time() + 400
        while _counts(storage)['finished'] < 3 and time.time() < deadline and p.poll() is None: time.sleep(0.3)
        assert p.poll() is None, 'the search ended before it could be killed'
    finally:
        p.send_signal(signal.SIGKILL); p.wait()
    st = _study(storage)
    before = {t.number: (t.state, t.value) for t in st.trials if t.state.is_finished()}
    assert 3 <= len(before) < 8
    res = _run(_cmd(tiny, storage, 8))
    assert res['n_complete'] + res['n_pruned'] == 8
    assert res['n_running'] == 0
    assert res['ran']['complete'] + res['ran']['pruned'] == 8 - sum(s != optuna.trial.TrialState.FAIL for s, _ in before.values())
    after = {t.number: (t.state, t.value) for t in _study(storage).trials}
    assert all(after[n] == v for n, v in before.items())           # the finished trials are kept, unchanged
    # a third invocation has nothing left to do
    assert _run(_cmd(tiny, storage, 8))['ran'] == {'complete': 0, 'pruned': 0, 'fail': 0}


def test_two_workers_one_process_group(tiny, tmp_path):
    "--workers 2 on a journal file: both workers run trials, their counts add up to the study's, none is lost."
    storage = tmp_path / 'study.log'
    res = _run(_cmd(tiny, storage, 10, '--workers', '2'))
    assert res['n_complete'] + res['n_pruned'] == 10 and res['n_running'] == 0 and res['n_fail'] == 0
    assert len(res['workers']) == 2
    ran = [w['ran_complete'] + w['ran_pruned'] for w in res['workers']]
    assert sum(ran) == 10
    pids = {t.user_attrs['worker_pid'] for t in _study(storage).trials}
    assert pids == {w['pid'] for w in res['workers']}


def test_two_commands_on_one_study(tiny, tmp_path):
    "Two independent `tune` commands on one SQLite study reach the target together, exactly."
    storage = tmp_path / 'shared.db'
    _run(_cmd(tiny, storage, 1))                                  # create the study first
    ps = [subprocess.Popen(_cmd(tiny, storage, 9), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=_env())
          for _ in range(2)]
    outs = [json.loads(p.communicate(timeout=600)[0].strip().splitlines()[-1]) for p in ps]
    c = _counts(storage)
    assert c['finished'] == 9 and c['running'] == 0
    assert 1 + sum(o['ran']['complete'] + o['ran']['pruned'] for o in outs) == 9

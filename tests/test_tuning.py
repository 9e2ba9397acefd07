"""Multi-process behaviour of `recsys-nb tune` on Optuna's own machinery (`Study.optimize`, `MaxTrialsCallback`, the
heartbeat): resume after a kill, several workers on one study."""
import json, os, signal, subprocess, sys, time, warnings
from pathlib import Path

import optuna
import pytest

from recsys_nb.synth import synth_netflix
from recsys_nb.tuning import open_storage, trial_counts

EPOCHS = '15'


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    return synth_netflix(tmp_path_factory.mktemp('data') / 'tiny', 'tiny', seed=0)


HEARTBEAT = 1          # seconds: a killed worker's trial is failed 3 s after its last heartbeat


def _cmd(data, storage, trials, *extra):
    return [sys.executable, '-m', 'recsys_nb.cli', 'tune', '--data', str(data), '--trials', str(trials),
            '--storage', str(storage), '--epochs', EPOCHS, '--device', 'cpu', '--heartbeat', str(HEARTBEAT), '--json', *extra]


def _env():
    return {**os.environ, 'JAX_PLATFORMS': 'cpu', 'CUDA_VISIBLE_DEVICES': '', 'XLA_PYTHON_CLIENT_PREALLOCATE': 'false'}


def _run(cmd, timeout=600) -> dict:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env())
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


def _study(storage, name='mf'):
    return optuna.load_study(study_name=name, storage=open_storage(storage))


def _counts(storage) -> dict:
    try: return trial_counts(_study(storage))
    except KeyError: return {'finished': 0, 'running': 0}


def test_resume_after_kill(tiny, tmp_path):
    """Kill a search mid-trial; the restarted search keeps the finished trials, Optuna's heartbeat fails the killed
    trial (which is then retried), and the study reaches the target."""
    storage = tmp_path / 'study.db'
    p = subprocess.Popen(_cmd(tiny, storage, 8), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env())
    try:
        deadline = time.time() + 400
        while (_counts(storage)['finished'] < 3 or _counts(storage)['running'] == 0) and time.time() < deadline and p.poll() is None:
            time.sleep(0.1)
        assert p.poll() is None, 'the search ended before it could be killed'
    finally:
        p.send_signal(signal.SIGKILL); p.wait()
    st = _study(storage)
    before = {t.number: (t.state, t.value) for t in st.trials if t.state.is_finished()}
    killed = [t.number for t in st.trials if t.state == optuna.trial.TrialState.RUNNING]
    assert 3 <= len(before) < 8 and len(killed) == 1
    time.sleep(3 * HEARTBEAT + 1)                                  # past the grace period of the killed trial's heartbeat
    res = _run(_cmd(tiny, storage, 8))
    assert res['n_complete'] + res['n_pruned'] == 8
    assert res['n_running'] == 0 and res['n_fail'] == 1
    assert res['ran']['complete'] + res['ran']['pruned'] == 8 - len(before)
    after = {t.number: t for t in _study(storage).trials}
    assert all((after[n].state, after[n].value) == v for n, v in before.items())   # the finished trials are kept, unchanged
    assert after[killed[0]].state == optuna.trial.TrialState.FAIL                 # failed by the heartbeat, not lost
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', optuna.exceptions.ExperimentalWarning)
        retried = [t for t in after.values() if optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == killed[0]]
    assert len(retried) == 1 and retried[0].params == after[killed[0]].params and retried[0].state.is_finished()
    # a third invocation has nothing left to do
    assert _run(_cmd(tiny, storage, 8))['ran'] == {'complete': 0, 'pruned': 0, 'fail': 0}


def test_two_workers_one_process_group(tiny, tmp_path):
    """--workers 2 on a journal file: both workers run trials, their counts add up to the study's, none is lost; the
    study overshoots the target by at most one trial (workers - 1), as `MaxTrialsCallback` allows."""
    storage = tmp_path / 'study.log'
    res = _run(_cmd(tiny, storage, 10, '--workers', '2'))
    finished = res['n_complete'] + res['n_pruned']
    assert 10 <= finished <= 11 and res['n_running'] == 0 and res['n_fail'] == 0
    assert len(res['workers']) == 2
    ran = [w['ran_complete'] + w['ran_pruned'] for w in res['workers']]
    assert sum(ran) == finished
    pids = {t.user_attrs['worker_pid'] for t in _study(storage).trials}
    assert pids == {w['pid'] for w in res['workers']}


def test_two_commands_on_one_study(tiny, tmp_path):
    "Two independent `tune` commands on one SQLite study reach the target together, losing none, one over at most."
    storage = tmp_path / 'shared.db'
    _run(_cmd(tiny, storage, 1))                                  # create the study first
    ps = [subprocess.Popen(_cmd(tiny, storage, 9), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
          for _ in range(2)]
    streams = [p.communicate(timeout=600) for p in ps]
    assert all(p.returncode == 0 for p in ps), [e[-2000:] for _, e in streams]
    outs = [json.loads(o) for o, _ in streams]
    c = _counts(storage)
    assert 9 <= c['finished'] <= 10 and c['running'] == 0
    assert 1 + sum(o['ran']['complete'] + o['ran']['pruned'] for o in outs) == c['finished']
    assert all('Warning' not in e for _, e in streams)          # no heartbeat warning: Optuna's own loop runs the trials

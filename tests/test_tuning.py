"""Multi-process behaviour of `recsys-nb tune` on Optuna's own machinery (`Study.optimize`, `MaxTrialsCallback`, the
heartbeat): resume after a kill, several workers on one study."""
import json, os, signal, subprocess, sys, time, warnings
from pathlib import Path

import optuna
import pytest

from recsys_nb.synth import synth_netflix
from recsys_nb.tuning import open_storage, trial_counts

pytestmark = pytest.mark.serial   # see conftest.py: run alone, after the parallel tests

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


def _training(storage, reported:bool=True) -> bool:
    """Whether a trial of the study in `storage` is running with its parameters drawn (and, with `reported`, has
    reported an epoch): a trial interrupted before it drew any has none to be retried with."""
    try: st = _study(storage)
    except KeyError: return False
    return any(t.params and (t.intermediate_values or not reported) for t in st.get_trials(states=(optuna.trial.TrialState.RUNNING,)))


def test_resume_after_kill(tiny, tmp_path):
    """Kill a search mid-trial; the restarted search keeps the finished trials, Optuna's heartbeat fails the killed
    trial (which is then retried), and the study reaches the target."""
    storage = tmp_path / 'study.db'
    p = subprocess.Popen(_cmd(tiny, storage, 8), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env())
    try:
        deadline = time.time() + 400
        # kill once 3 trials finished and one is training (see `_training`)
        while (_counts(storage)['finished'] < 3 or not _training(storage)) and time.time() < deadline and p.poll() is None:
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
    res = _run(_cmd(tiny, storage, 6, '--workers', '2'))
    finished = res['n_complete'] + res['n_pruned']
    assert 6 <= finished <= 7 and res['n_running'] == 0 and res['n_fail'] == 0
    assert len(res['workers']) == 2
    ran = [w['ran_complete'] + w['ran_pruned'] for w in res['workers']]
    assert sum(ran) == finished
    pids = {t.user_attrs['worker_pid'] for t in _study(storage).trials}
    assert pids == {w['pid'] for w in res['workers']}


def test_two_commands_on_one_study(tiny, tmp_path):
    "Two independent `tune` commands on one SQLite study reach the target together, losing none, one over at most."
    storage = tmp_path / 'shared.db'
    _run(_cmd(tiny, storage, 1))                                  # create the study first
    ps = [subprocess.Popen(_cmd(tiny, storage, 5), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
          for _ in range(2)]
    streams = [p.communicate(timeout=600) for p in ps]
    assert all(p.returncode == 0 for p in ps), [e[-2000:] for _, e in streams]
    outs = [json.loads(o) for o, _ in streams]
    c = _counts(storage)
    assert 5 <= c['finished'] <= 6 and c['running'] == 0
    assert 1 + sum(o['ran']['complete'] + o['ran']['pruned'] for o in outs) == c['finished']
    assert all('Warning' not in e for _, e in streams)          # no heartbeat warning: Optuna's own loop runs the trials


def _main(argv, capsys) -> tuple:
    "(exit status, stdout, stderr) of `recsys-nb ARGV` run in this process."
    from recsys_nb.cli import main
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_default_storage_in_out_dir(tiny, tmp_path, monkeypatch, capsys):
    "Without --storage the study goes to OUT/optuna.db (default runs/tune), never runs/tuning.db; --storage wins."
    monkeypatch.chdir(tmp_path)
    base = ['tune', '--data', tiny, '--trials', '0', '--epochs', '5', '--device', 'cpu', '--json']
    rc, out, _ = _main(base, capsys)
    assert rc == 0 and json.loads(out)['storage'] == str(Path('runs') / 'tune' / 'optuna.db')
    assert (tmp_path / 'runs' / 'tune' / 'optuna.db').is_file() and not (tmp_path / 'runs' / 'tuning.db').exists()
    rc, out, _ = _main(base + ['--out', tmp_path / 'here'], capsys)
    assert rc == 0 and (tmp_path / 'here' / 'optuna.db').is_file()
    assert json.loads(out)['storage'] == str(tmp_path / 'here' / 'optuna.db')
    rc, out, _ = _main(base + ['--out', tmp_path / 'unused', '--storage', tmp_path / 'explicit.db'], capsys)
    assert rc == 0 and (tmp_path / 'explicit.db').is_file() and not (tmp_path / 'unused').exists()


ERRORS = {                                       # argv after the common part: what the one line says
    'other settings': (['--epochs', '6'], 'made with other settings'),
    'fix not a number': (['--fix', 'lr=abc'], "'abc' is not a number"),
    'fix unknown field': (['--fix', 'nosuchfield=1'], 'nosuchfield=1'),
    'fix out of range': (['--fix', 'lr=-1'], 'lr'),
    'fix searched field': (['--fix', 'k=4'], 'searched'),
    'storage is a folder': (['--storage', '{tmp}'], 'is a folder'),
    'storage under a file': (['--storage', '{tmp}/afile/s.db'], 'is a file, not a folder'),
    'journal under a file': (['--storage', '{tmp}/afile/s.log'], 'is a file, not a folder'),
    'out is a file': (['--out', '{tmp}/afile'], 'is a file, not a folder'),
    'no heartbeat': (['--heartbeat', '0'], 'heartbeat'),
    'no workers': (['--workers', '0'], 'workers'),
}


@pytest.mark.parametrize('case', list(ERRORS))
def test_errors_are_one_line(case, tiny, tmp_path, monkeypatch, capsys):
    "Each anticipated error of `tune` is one line on stderr, status 2, nothing on stdout, no traceback."
    monkeypatch.chdir(tmp_path)                  # the default storage, were one made, stays in the test's folder
    (tmp_path / 'afile').write_text('not a folder')
    base = ['tune', '--data', tiny, '--trials', '0', '--epochs', '5', '--device', 'cpu', '--json']
    if case == 'other settings':
        assert _main(base + ['--storage', tmp_path / 's.db'], capsys)[0] == 0
        base += ['--storage', tmp_path / 's.db']
    extra, says = ERRORS[case]
    rc, out, err = _main(base + [a.format(tmp=tmp_path) for a in extra], capsys)
    assert rc == 2 and out == '', (rc, out, err)
    assert len(err.strip().splitlines()) == 1 and err.startswith('recsys-nb tune: error: ') and says in err, err


RACE = '''
import sys, time
from recsys_nb.tuning import open_study
open_study('mf', sys.argv[1] + '.warm', epochs=5, attrs={'epochs': 5})   # lazy imports done: each race starts on time
print('ready', flush=True)
start = float(sys.stdin.readline())                 # the same instant for every process, sent once all are ready
for rep, db in enumerate(sys.argv[2:]):
    while time.time() < start + 0.6 * rep: pass
    open_study('mf', db, epochs=5, attrs={'epochs': 5})
'''


def test_workers_create_a_new_sqlite_file_together(tmp_path):
    """Three processes open the same new SQLite study at the same instant, five times over (five new files, 0.6 s
    apart): none fails (the schema-creation race, 'table … already exists' / alembic_version's UNIQUE, is
    retried)."""
    dbs = [str(tmp_path / f'race{rep}.db') for rep in range(5)]
    ps = [subprocess.Popen([sys.executable, '-c', RACE, str(tmp_path / f'own{n}'), *dbs], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env=_env()) for n in range(3)]
    assert all(p.stdout.readline() == 'ready\n' for p in ps)                  # every process has imported
    start = f'{time.time() + 0.2}\n'
    for p in ps: p.stdin.write(start); p.stdin.flush()
    outs = [p.communicate(timeout=120) for p in ps]
    assert all(p.returncode == 0 for p in ps), [e[-1500:] for _, e in outs]
    for db in dbs: assert len(optuna.get_all_study_summaries(open_storage(db))) == 1


def test_failed_first_trial_is_queued_again(tiny, tmp_path):
    "An enqueued trial that failed (as Ctrl-C leaves it) is queued again by the next `tune` with the same `enqueue`."
    from recsys_nb.data import load_netflix
    from recsys_nb.tuning import default_trial, tune
    data, first, db = load_netflix(tiny), default_trial(), tmp_path / 'q.db'
    st = tune(data, 0, storage=db, epochs=5, progress=False, enqueue=[first], device='cpu').study
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', UserWarning)                    # ask() outside optimize: no heartbeat, said Optuna
        t = st.ask()
    assert t.params == first
    st.tell(t, state=optuna.trial.TrialState.FAIL)
    trials = tune(data, 1, storage=db, epochs=5, progress=False, enqueue=[first], device='cpu').study.trials
    assert [(x.params == first, x.state.name) for x in trials] in ([(True, 'FAIL'), (True, s)] for s in ('COMPLETE', 'PRUNED'))





def test_interrupted_first_trial_is_retried(tiny, tmp_path):
    """Ctrl-C during the enqueued first trial (`--from-defaults`) fails it; the next run retries it with the same
    parameters, so the study still holds a finished trial at the defaults."""
    from recsys_nb.tuning import default_trial
    storage = tmp_path / 'first.db'
    cmd = _cmd(tiny, storage, 2, '--from-defaults', '--epochs', '200')   # a first trial long enough to be caught mid-way
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env())
    try:
        deadline = time.time() + 300
        while not _training(storage, reported=False) and time.time() < deadline and p.poll() is None:
            time.sleep(0.05)     # interrupt once the first trial runs: waiting for a reported epoch races its early stop
        assert p.poll() is None, 'the search ended before it could be interrupted'
        while p.poll() is None:                  # a SIGINT that lands in a garbage-collector callback is lost: send again
            p.send_signal(signal.SIGINT)
            try: p.wait(timeout=0.3)
            except subprocess.TimeoutExpired: pass
    finally:
        if p.poll() is None: p.kill(); p.wait()
    first = _study(storage).trials[0]
    assert first.params == default_trial() and first.state in (optuna.trial.TrialState.FAIL, optuna.trial.TrialState.RUNNING)
    time.sleep(3 * HEARTBEAT + 1)                # past the grace period, should the interrupt have left it RUNNING
    _run(cmd)
    trials = _study(storage).trials
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', optuna.exceptions.ExperimentalWarning)
        retried = [t for t in trials if optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == 0]
    assert len(retried) == 1 and retried[0].params == default_trial() and retried[0].state.name in ('COMPLETE', 'PRUNED')


def test_running_trial_without_heartbeat_is_failed(tiny, tmp_path):
    """A RUNNING trial left by a process on another machine without a heartbeat record gets one from the next `tune`,
    and is failed (and retried) once it is older than the grace period: host names play no part."""
    storage = tmp_path / 'orphan.db'
    _run(_cmd(tiny, storage, 1))
    bare = optuna.storages.RDBStorage(f'sqlite:///{storage}')             # no heartbeat
    orphan = optuna.load_study(study_name='mf', storage=bare).ask()
    orphan.set_user_attr('worker_host', 'another-machine'); orphan.set_user_attr('worker_pid', 1)
    _run(_cmd(tiny, storage, 2))                                           # it is given a heartbeat here…
    time.sleep(3 * HEARTBEAT + 1)
    res = _run(_cmd(tiny, storage, 3))                                     # …and failed by it here
    st = _study(storage)
    assert st.trials[orphan.number].state == optuna.trial.TrialState.FAIL
    assert res['n_running'] == 0 and res['n_complete'] + res['n_pruned'] == 3
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', optuna.exceptions.ExperimentalWarning)
        retried = [t for t in st.trials if optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == orphan.number]
    assert len(retried) == 1


def test_options_mirror_tune_and_objective():
    "The options of `recsys-nb tune` are `tune`'s and `mf_objective`'s parameters, with their names and defaults."
    import argparse, re
    from recsys_nb.options import settings
    from recsys_nb.tuning import OBJECTIVE_NO_OPTION, TUNE_NO_OPTION, mf_objective, register_cli, tune
    flags = set(re.findall(r'--[a-z][a-z-]*', register_cli(argparse.ArgumentParser().add_subparsers()).format_help()))
    for fn, skip in ((tune, TUNE_NO_OPTION), (mf_objective, OBJECTIVE_NO_OPTION)):
        for name, _ in settings(fn):
            if name not in skip: assert '--' + name.replace('_', '-') in flags, name
    assert {'--trials', '--workers', '--seed', '--backend', '--mode', '--epochs', '--progress', '--no-progress', '--out',
            '--storage', '--heartbeat', '--fix', '--free', '--k-log', '--from-defaults', '--json', '--target', '--val-frac',
            '--device', '--timeout', '--study', '--data', '--train', '--test'} <= flags

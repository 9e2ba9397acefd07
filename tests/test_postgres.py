"""The search on a real PostgreSQL server: a throwaway cluster (Debian's `postgresql`, `initdb` in a temporary folder
as an unprivileged user, a free port on 127.0.0.1, stopped at the end) and three `recsys-nb tune` workers started
together on its fresh database, one of them SIGKILLed mid-trial. `make test` installs the server where it can
(`make postgres`); where it is missing the test is skipped and says why."""
import glob, json, os, pwd, shutil, signal, socket, subprocess, tempfile, time, warnings
from pathlib import Path

import optuna
import pytest

from recsys_nb.synth import synth_netflix
from recsys_nb.tuning import open_storage, trial_counts
from test_tuning import HEARTBEAT, _cmd, _env

pytestmark = pytest.mark.serial   # see conftest.py: run alone, after the parallel tests


def _pg_bin() -> Path | None:
    "The folder of `initdb`/`pg_ctl`: on PATH, or Debian's /usr/lib/postgresql/<version>/bin."
    if (p := shutil.which('initdb')) and shutil.which('pg_ctl'): return Path(p).resolve().parent
    found = sorted(glob.glob('/usr/lib/postgresql/*/bin/initdb'), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _missing() -> str | None:
    "Why the test cannot run here, or None."
    if _pg_bin() is None: return "PostgreSQL's server programs (initdb, pg_ctl) are not installed: `make postgres` installs them"
    try: import psycopg  # noqa: F401  (SQLAlchemy's driver for postgresql:// URLs)
    except ImportError: return 'psycopg (3) is not installed: pip install "recsys_nb[postgres]"'
    return None


@pytest.fixture(scope='module')
def postgres():
    "URL of a fresh database on a throwaway PostgreSQL cluster; the cluster is stopped and removed afterwards."
    if (why := _missing()): pytest.skip(why)
    bin_ = _pg_bin()
    root = Path(tempfile.mkdtemp(prefix='recsys-nb-pg-'))      # not under pytest's root-only tmp folders
    kw = {}
    if os.geteuid() == 0:                                      # initdb refuses root: run the server as 'nobody'
        nobody = pwd.getpwnam('nobody')
        os.chown(root, nobody.pw_uid, nobody.pw_gid)
        kw = dict(user=nobody.pw_uid, group=nobody.pw_gid, extra_groups=[])
    data, port = root / 'data', _free_port()
    def pg(*args, timeout=120):
        out = subprocess.run([str(bin_ / args[0]), *args[1:]], capture_output=True, text=True, timeout=timeout, cwd=root, **kw)
        assert out.returncode == 0, f'{args[0]}: {out.stderr[-2000:]}'
    pg('initdb', '-D', str(data), '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync', '--no-instructions')
    pg('pg_ctl', '-D', str(data), '-w', '-l', str(root / 'server.log'), 'start',
       '-o', f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100")
    try:
        yield f'postgresql://postgres@127.0.0.1:{port}/postgres'
    finally:
        pg('pg_ctl', '-D', str(data), '-w', '-m', 'immediate', 'stop')
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    return synth_netflix(tmp_path_factory.mktemp('data') / 'tiny', 'tiny', seed=0)


TARGET = 12


def _trials(storage):
    "The study's trials ([] before a worker has created it), through one storage object: a new one per call would leak connections."
    try: return optuna.load_study(study_name='mf', storage=storage).trials
    except KeyError: return []


def _wait_stopped(pid, timeout=10.0):
    "Wait until the process `pid` is stopped (state T in /proc): a SIGSTOP is delivered asynchronously."
    end = time.time() + timeout
    while time.time() < end:
        if Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()[0] in ('T', 't'): return
        time.sleep(0.005)
    raise AssertionError(f'process {pid} did not stop')


def _trial_state(storage, number):
    return next(t.state for t in _trials(storage) if t.number == number)


def test_three_workers_one_killed(tiny, postgres):
    """Three workers start together on a fresh database (the schema-creation race), one is SIGKILLed mid-trial: the
    two others reach the target, the killed trial ends FAIL through Optuna's heartbeat and is retried with its
    parameters, every finished trial is counted by exactly one worker, and no worker warns or fails."""
    cmd = _cmd(tiny, postgres, TARGET)
    storage = None                          # opened once the workers have created the schema (opening creates it too)
    ps = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env()) for _ in range(3)]
    try:
        victim, deadline = None, time.time() + 300
        while victim is None and time.time() < deadline and all(p.poll() is None for p in ps):
            if storage is None:
                time.sleep(1); storage = open_storage(postgres)
            ts = _trials(storage)
            done = sum(t.state.is_finished() for t in ts)
            mid = [t for t in ts if t.state == optuna.trial.TrialState.RUNNING and t.intermediate_values]
            pids = {p.pid: p for p in ps}
            if done >= 2 and (hit := [t for t in mid if t.user_attrs.get('worker_pid') in pids]):
                cand, number = pids[hit[0].user_attrs['worker_pid']], hit[0].number
                cand.send_signal(signal.SIGSTOP)    # frozen, it cannot finish the trial between this look and the kill
                _wait_stopped(cand.pid)
                if _trial_state(storage, number) == optuna.trial.TrialState.RUNNING:
                    victim, killed_number = cand, number
                    victim.send_signal(signal.SIGKILL)
                else: cand.send_signal(signal.SIGCONT)  # it finished the trial before it stopped: look again
            else: time.sleep(0.05)
        assert victim is not None, 'no worker could be killed mid-trial: ' + ' | '.join(
            p.stderr.read()[-1500:] for p in ps if p.poll() is not None)
        others = [p for p in ps if p is not victim]
        streams = [p.communicate(timeout=600) for p in others]
        victim.wait()
    finally:
        for p in ps:
            if p.poll() is None: p.kill(); p.wait()
    assert all(p.returncode == 0 for p in others), [e[-2000:] for _, e in streams]
    assert all('Warning' not in e and 'Traceback' not in e for _, e in streams), [e[-2000:] for _, e in streams]
    outs = [json.loads(o) for o, _ in streams]
    ts = {t.number: t for t in _trials(storage)}
    assert len(ts) == len(set(ts))
    st = optuna.trial.TrialState
    assert ts[killed_number].state == st.FAIL                                   # failed by the heartbeat, not stuck
    assert [n for n, t in ts.items() if t.state == st.FAIL] == [killed_number]  # nothing else failed
    assert not [n for n, t in ts.items() if t.state == st.RUNNING]
    finished = [t for t in ts.values() if t.state in (st.COMPLETE, st.PRUNED)]
    assert TARGET <= len(finished) <= TARGET + 2                                # overshoot: at most one per other worker
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', optuna.exceptions.ExperimentalWarning)
        retried = [t for t in ts.values() if optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == killed_number]
    assert len(retried) == 1 and retried[0].params == ts[killed_number].params and retried[0].state.is_finished()
    # every finished trial was run by one worker: the survivors' counts plus the victim's finished trials add up
    by_victim = sum(t.user_attrs.get('worker_pid') == victim.pid for t in finished)
    assert sum(o['ran']['complete'] + o['ran']['pruned'] for o in outs) + by_victim == len(finished)
    assert trial_counts(optuna.load_study(study_name='mf', storage=storage))['finished'] == len(finished)


def test_missing_driver_is_one_line(tmp_path, monkeypatch, capsys):
    "Without psycopg a postgresql:// storage is a one-line error (exit 2) that names the extra to install."
    from recsys_nb.cli import main
    monkeypatch.setitem(__import__('sys').modules, 'psycopg', None)      # `import psycopg` raises ImportError
    data = synth_netflix(tmp_path / 'tiny', 'tiny', seed=0)
    assert main(['tune', '--data', str(data), '--trials', '1', '--storage', 'postgresql://u@127.0.0.1:1/x']) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 'recsys_nb[postgres]' in err and 'psycopg 3' in err, err

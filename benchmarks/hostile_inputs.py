"""Hostile inputs: run the `recsys-nb` command line on a matrix of bad files and bad options, one case each.

    python benchmarks/hostile_inputs.py [--only SUBSTR] [--json] [--keep DIR] [--timeout 120] [--jobs 1] [--strict]

Each case makes a small valid data set with the CLI's own `synth` commands (`data synth netflix --size tiny`,
`data synth movielens --size tiny`, `spotify synth --preset tiny`, `stl synth --preset tiny`), corrupts a copy of it
and runs one command on it in a subprocess (CPU only: JAX_PLATFORMS=cpu, CUDA_VISIBLE_DEVICES=''), bounded by a
timeout. One line is printed per case: verdict, exit code, case name and the first line of stderr. Verdicts:

    OK      exit 2 with a one-line error on stderr and no traceback, or exit 0 with the problem visible in the output
            (counted in the report, shown in the summary) -- or exit 0 where the input is harmless (e.g. `+7255`)
    BAD     a traceback, any other exit code (1, a signal), or no answer within the timeout
    SILENT  exit 0, but the problem is neither refused nor reported (or the command wrote somewhere else than asked)
    WEAK    exit 2 without a traceback, but the message misses what the case checks (the line number, a short quote,
            both formats named) or stderr holds more than the one error line
    SKIP    the case cannot be tested here (e.g. a file system where chmod 555 does not stop writes)

Then a summary; the exit status is 1 when any case is BAD (with --strict: also SILENT or WEAK), else 0. With --json the
table goes to stderr and stdout holds one JSON list of the results. Progress-bar redraws (tqdm) are taken out of stderr
before it is judged or shown. Files are made in a temporary directory, removed
at the end unless --keep DIR is given (then everything is made there and kept).
"""
from __future__ import annotations
import argparse, json, os, re, shlex, shutil, signal, subprocess, sys, tempfile, threading, time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
VENV_PY = ROOT / '.venv' / 'bin' / 'python'
MIB = 1 << 20

# ----------------------------------------------------------------------------------------------------------------------
# small file helpers

def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().split(b'\n')

def set_line(path: Path, n: int, new: bytes):
    "Replace line `n` (1-based) of `path` with `new`."
    ls = lines_of(path); ls[n - 1] = new; path.write_bytes(b'\n'.join(ls))

def edit_line(path: Path, n: int, fn: Callable[[bytes], bytes]):
    "Line `n` (1-based) of `path` becomes fn(line)."
    ls = lines_of(path); ls[n - 1] = fn(ls[n - 1]); path.write_bytes(b'\n'.join(ls))

def field_set(sep: bytes, i: int, value: bytes):
    "A line editor that sets field `i` of a `sep`-separated line."
    def f(line: bytes) -> bytes:
        parts = line.split(sep); parts[i] = value; return sep.join(parts)
    return f

def copy_fixture(fx: Path, dst: Path) -> Path:
    shutil.copytree(fx, dst, symlinks=True)
    return dst

def json_edit(path: Path, fn):
    "Load a JSON file, let `fn` change it in place, write it back."
    d = json.loads(path.read_text()); fn(d); path.write_text(json.dumps(d))

CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER, PR_CAPBSET_DROP = 1, 2, 3, 24

def without_root_override():
    """`preexec_fn` that makes file modes bind a root child as they bind any user: it drops the capabilities that let
    root write anywhere (DAC override, read-search, owner override) from the child's bounding set, so the command
    exec'd next starts without them. A no-op for other users, whom modes bind already."""
    if os.geteuid() != 0: return
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0: raise OSError(ctypes.get_errno(), 'prctl(PR_CAPBSET_DROP)')

def file_size_limit(nbytes: int):
    """`preexec_fn` for a full disk: a write past `nbytes` in any one file fails (EFBIG, as ENOSPC fails it), and the
    file keeps what was written before, as on a disk that filled up."""
    def limit():
        import resource
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)    # the write fails with an error instead of killing the process
    return limit

def chmod_binds(d: Path) -> bool:
    "True when a child started with `without_root_override` cannot create a file in `d` (mode 555)."
    probe = d / '.write_probe'
    try: r = subprocess.run(['touch', str(probe)], capture_output=True, preexec_fn=without_root_override)
    except OSError: return False                       # the capabilities could not be dropped here
    if r.returncode == 0: probe.unlink(); return False
    return True

# ----------------------------------------------------------------------------------------------------------------------
# fixtures: small valid data sets, made once with the CLI's own synth commands

class Fixtures:
    def __init__(self, base: Path, runner):
        self.base, self.run, self._made, self.errors = base / 'fixtures', runner, {}, {}
        self._lock = threading.RLock()               # cases running at once (--jobs) share the fixtures
        self.base.mkdir(parents=True, exist_ok=True)

    def get(self, name: str) -> Path:
        with self._lock: return self._get(name)

    def _get(self, name: str) -> Path:
        if name in self.errors: raise RuntimeError(self.errors[name])
        if name not in self._made:
            try: self._made[name] = getattr(self, '_make_' + name)(self.base / name)
            except Exception as e:
                self.errors[name] = f'fixture {name!r} could not be made: {e}'
                raise RuntimeError(self.errors[name]) from None
        return self._made[name]

    def _cli(self, argv, cwd=None, timeout=300):
        r = self.run(argv, cwd or self.base, timeout)
        if r['rc'] != 0: raise RuntimeError(f"`recsys-nb {shlex.join(argv)}` exited {r['rc']}: {r['stderr'][-400:]}")

    def _make_nf(self, d):            # the course's Netflix subset: users.txt, netflix_train/test.txt, movie_titles.txt
        self._cli(['data', 'synth', 'netflix', '--size', 'tiny', '--out', str(d), '--no-progress']); return d

    def _make_ml(self, d):            # MovieLens 100K: u.data, u.item
        self._cli(['data', 'synth', 'movielens', '--size', 'tiny', '--out', str(d), '--no-progress']); return d

    def _make_ml1m(self, d):          # MovieLens 1M: ratings.dat (user::movie::rating::time), from the 100K synth
        ml = self.get('ml'); d.mkdir()
        rows = [l.split(b'\t') for l in (ml / 'u.data').read_bytes().splitlines() if l.strip()]
        (d / 'ratings.dat').write_bytes(b''.join(b'::'.join(r) + b'\n' for r in rows))
        return d

    def _make_mllatest(self, d):      # MovieLens latest: ratings.csv with a header, split into train/test files
        ml = self.get('ml'); d.mkdir()
        rows = [l.split(b'\t') for l in (ml / 'u.data').read_bytes().splitlines() if l.strip()]
        head = b'userId,movieId,rating,timestamp\n'
        body = [b','.join(r) + b'\n' for r in rows]
        cut = len(body) * 4 // 5
        (d / 'ratings.csv').write_bytes(head + b''.join(body[:cut]))
        (d / 'ratings_test.csv').write_bytes(head + b''.join(body[cut:]))
        return d

    def _make_mpd(self, d):           # Spotify MPD: data/mpd.slice.*.json (10 slices of 40 playlists)
        self._cli(['spotify', 'synth', '--preset', 'tiny', '--out', str(d)]); return d

    def _make_stl(self, d):           # Shop the Look: fashion.json, fashion-cat.json, images/
        self._cli(['stl', 'synth', '--preset', 'tiny', '--out', str(d)]); return d

    def _make_stl_model(self, d):     # a tiny trained STL model (5 steps) for `stl recommend`
        self._cli(['stl', 'train', '--data', str(self.get('stl')), *STL_TRAIN_TINY, '--workdir', str(d)], timeout=600)
        return d / 'model.msgpack'

STL_TRAIN_TINY = ['--config', 'tiny', '--steps', '5', '--log-every', '5', '--eval-every', '5', '--checkpoint-every', '5',
                  '--no-progress']
MF_QUICK = ['--max-epochs', '2', '--no-progress']
TUNE_QUICK = ['--trials', '1', '--epochs', '2', '--no-progress', '--backend', 'torch', '--device', 'cpu']

# ----------------------------------------------------------------------------------------------------------------------
# cases

@dataclass
class Ctx:
    "What a case's `setup` gets: its own folder, the fixtures, and a way to skip."
    dir: Path
    fx: Fixtures
    skip_reason: str | None = None
    preexec: Callable | None = None        # run in the command's process before exec (permissions, file-size limit)
    def fixture(self, name) -> Path: return self.fx.get(name)
    def copy(self, name, sub=None) -> Path: return copy_fixture(self.fixture(name), self.dir / (sub or name))
    def skip(self, why: str): self.skip_reason = why

@dataclass
class Case:
    name: str
    setup: Callable[[Ctx], list]           # makes the bad files; returns the argv after `recsys-nb`
    ok0: bool | str | None = None          # exit 0 is OK: True (harmless input) or when this regex matches the output
    check: Callable | None = None          # (result, ctx) -> problem text or None: what the message/files must show
    about: str = ''                        # what is being probed (shown in --json)

def line_named(n: int):
    "A check: the error names line `n`."
    def f(r, ctx):
        if r['rc'] == 2 and not re.search(rf'\bline {n}\b', r['error_line']):
            return f'the error does not name line {n}'
    return f

def quote_at_most(n: int):
    "A check: the error line is at most `n` characters (the path, the problem and a quote of ~200: a long bad line is not quoted whole)."
    def f(r, ctx):
        if r['rc'] == 2 and len(r['error_line']) > n:
            return f"the error line is {len(r['error_line']):,} characters long (the offending text is quoted whole)"
    return f

def mentions(*patterns, what=''):
    "A check: the error matches every regex in `patterns` (case-insensitive)."
    def f(r, ctx):
        if r['rc'] == 2:
            miss = [p for p in patterns if not re.search(p, r['error_line'], re.I)]
            if miss: return f"the error does not mention {what or ', '.join(miss)}"
    return f

def all_checks(*fs):
    def f(r, ctx):
        for g in fs:
            if (p := g(r, ctx)): return p
    return f

def file_at(rel: str):
    "A check for exit 0: the command wrote exactly `rel` (relative to the case folder)."
    def f(r, ctx):
        if r['rc'] == 0 and not (ctx.dir / rel).exists():
            made = sorted(str(p.relative_to(ctx.dir)) for p in ctx.dir.rglob('*') if p.is_file())
            return f'asked for {rel!r}, but it does not exist; files made: {made}'
    return f

def nothing_trained(r, ctx):
    "A check: the command failed before it loaded data or trained."
    if r['rc'] == 2 and ('[mf]' in r['stderr'] or 'train_rmse' in r['stdout']):
        return 'it failed after training started, not before'

# --- the Netflix subset (load_netflix via `data check DIR`, `mf --data`, `usercf --data`) ---------------------------

def nf_copy(ctx, edit=None, file='netflix_train.txt'):
    d = ctx.copy('nf')
    if edit: edit(d / file)
    return d

def c_nf_train_is_dir(ctx):
    d = nf_copy(ctx); (d / 'netflix_train.txt').unlink(); (d / 'netflix_train.txt').mkdir()
    return ['data', 'check', str(d), '--no-progress']

def c_nf_train_is_dir_mf(ctx):
    d = nf_copy(ctx); (d / 'netflix_train.txt').unlink(); (d / 'netflix_train.txt').mkdir()
    return ['mf', '--data', str(d), *MF_QUICK]

def nf_line(n, new: bytes, file='netflix_train.txt', cmd='check'):
    def setup(ctx):
        d = nf_copy(ctx, lambda p: set_line(p, n, new) if not callable(new) else edit_line(p, n, new), file)
        if cmd == 'check': return ['data', 'check', str(d), '--no-progress']
        if cmd == 'mf': return ['mf', '--data', str(d), *MF_QUICK]
        if cmd == 'usercf': return ['usercf', '--data', str(d)]
        raise ValueError(cmd)
    return setup

def users_line(n, new: bytes):
    def setup(ctx):
        d = nf_copy(ctx, lambda p: set_line(p, n, new), 'users.txt')
        return ['data', 'check', str(d), '--no-progress']
    return setup

# --- --train / --test files -------------------------------------------------------------------------------------------

def c_train_is_dir(ctx):
    nf = ctx.fixture('nf'); (ctx.dir / 'train_dir').mkdir()
    return ['usercf', '--train', str(ctx.dir / 'train_dir'), '--test', str(nf / 'netflix_test.txt')]

def c_test_is_dir(ctx):
    nf = ctx.fixture('nf'); (ctx.dir / 'test_dir').mkdir()
    return ['usercf', '--train', str(nf / 'netflix_train.txt'), '--test', str(ctx.dir / 'test_dir')]

def c_header_only_train(ctx, cmd='mf'):
    ml = ctx.fixture('mllatest')
    (ctx.dir / 'ratings.csv').write_text('userId,movieId,rating,timestamp\n')
    extra = MF_QUICK if cmd == 'mf' else []
    return [cmd, '--train', str(ctx.dir / 'ratings.csv'), '--test', str(ml / 'ratings_test.csv'), *extra]

def c_test_file(content: bytes, cmd='usercf', train='nf'):
    def setup(ctx):
        src = ctx.fixture(train)
        tr = src / ('netflix_train.txt' if train == 'nf' else 'ratings.csv')
        (ctx.dir / 'test.txt').write_bytes(content)
        extra = MF_QUICK if cmd == 'mf' else []
        return [cmd, '--train', str(tr), '--test', str(ctx.dir / 'test.txt'), *extra]
    return setup

# --- MovieLens (load_movielens via `data check DIR`, read_ratings via `data check FILE`) ------------------------------

def ml_line(n, edit, what='u.data', as_file=False):
    def setup(ctx):
        if what == 'u.data':
            d = ctx.copy('ml'); p = d / 'u.data'
        else:
            d = ctx.copy('ml1m'); p = d / 'ratings.dat'
        edit_line(p, n, edit) if callable(edit) else set_line(p, n, edit)
        target = p if (as_file or what != 'u.data') else d
        return ['data', 'check', str(target), '--no-progress']
    return setup

def c_no_ratings_dir(cmd):
    def setup(ctx):
        d = ctx.dir / 'no_ratings'; d.mkdir(); (d / 'README.txt').write_text('not a ratings file\n')
        if cmd == 'check': return ['data', 'check', str(d), '--no-progress']
        return [cmd, '--data', str(d), *(MF_QUICK if cmd == 'mf' else [])]
    return setup

# --- Spotify MPD (`spotify prepare`) ----------------------------------------------------------------------------------

FIRST_SLICE = 'mpd.slice.0-39.json'

def mpd_case(edit_slice=None, extra=None):
    def setup(ctx):
        d = ctx.copy('mpd')
        if edit_slice: json_edit(d / 'data' / FIRST_SLICE, edit_slice)
        if extra: extra(d)
        return ['spotify', 'prepare', '--data', str(d), '--out', str(ctx.dir / 'prepared')]
    return setup

def first_track(field, value, track=1, playlist=0):
    def f(data):
        t = data['playlists'][playlist]['tracks']
        assert len(t) > track + 1, 'the track probed must not be the last'
        t[track][field] = value
    return f

def mpd_slice_dir(d):
    (d / 'data' / 'mpd.slice.400-439.json').mkdir()

def mpd_pid_outside(data):
    data['playlists'][0]['pid'] = 5000          # the slice holds pids 0-39

# --- Shop the Look ----------------------------------------------------------------------------------------------------

def stl_train(d, ctx): return ['stl', 'train', '--data', str(d), *STL_TRAIN_TINY, '--workdir', str(ctx.dir / 'run')]
def stl_random(d, ctx, embed=False):
    return ['stl', 'random', '--data', str(d), '--out', str(ctx.dir / 'random.html'), '--n', '1000'] + (['--embed'] if embed else [])

def stl_product_image(d: Path) -> Path:
    "The image of a product that is in a valid pair (so training, embedding and `random --embed` all read it)."
    first = json.loads((d / 'fashion.json').read_text().splitlines()[0])
    p = d / 'images' / f"{first['product']}.jpg"
    if not p.exists(): p = sorted((d / 'images').glob('*.jpg'))[0]
    return p

def stl_case(corrupt, cmd='train'):
    def setup(ctx):
        d = ctx.copy('stl'); corrupt(d)
        if cmd == 'train': return stl_train(d, ctx)
        if cmd == 'random': return stl_random(d, ctx)
        if cmd == 'random_embed': return stl_random(d, ctx, embed=True)
        raise ValueError(cmd)
    return setup

def stl_nonutf8(file):
    def f(d):
        p = d / file; b = p.read_bytes()
        i = b.index(b'Apparel') if b'Apparel' in b else len(b) // 2
        p.write_bytes(b[:i] + b'Caf\xe9 \xff' + b[i:])    # Latin-1 é and a byte that is never UTF-8, inside a string
    return f

def stl_truncate_image(d):
    p = stl_product_image(d); b = p.read_bytes(); p.write_bytes(b[:len(b) // 3])

def stl_nonimage(d):
    stl_product_image(d).write_text('<html>not a JPEG</html>\n')

def stl_no_images(d):
    shutil.rmtree(d / 'images'); (d / 'images').mkdir()

def stl_empty_pairs(d):
    (d / 'fashion.json').write_bytes(b'')

def c_stl_synth_out_file(ctx):
    f = ctx.dir / 'existing_file'; f.write_text('I am a file\n')
    return ['stl', 'synth', '--preset', 'tiny', '--out', str(f)]

def c_stl_recommend_out_file(ctx):
    model = ctx.fixture('stl_model'); f = ctx.dir / 'existing_file'; f.write_text('I am a file\n')
    return ['stl', 'recommend', '--data', str(ctx.fixture('stl')), '--model', str(model), '--out', str(f), '--pages', '1']

# --- tune ---------------------------------------------------------------------------------------------------------------

def c_tune_fix(ctx):
    return ['tune', '--data', str(ctx.fixture('nf')), '--fix', 'lr=abc', *TUNE_QUICK, '--out', str(ctx.dir / 'tune')]

def c_tune_storage(rel):
    def setup(ctx):
        return ['tune', '--data', str(ctx.fixture('nf')), *TUNE_QUICK, '--storage', str(ctx.dir / rel)]
    return setup

# --- mf --history and read-only --out ---------------------------------------------------------------------------------

def c_history_nonexistent(ctx):
    p = Path('/nonexistent/sub/h.csv')
    if Path('/nonexistent').exists() or os.access('/', os.W_OK):   # root may create /nonexistent: a folder nobody can make
        p = Path('/proc/recsys-nb-nonexistent/sub/h.csv')
    return ['mf', '--data', str(ctx.fixture('nf')), *MF_QUICK, '--history', str(p)]

def c_history_parent_file(ctx):
    (ctx.dir / 'afile').write_text('a file, not a folder\n')
    return ['mf', '--data', str(ctx.fixture('nf')), *MF_QUICK, '--history', str(ctx.dir / 'afile' / 'sub' / 'h.csv')]

def readonly(argv_of):
    "A case whose output goes into a mode-555 folder, run without root's override of file modes."
    def setup(ctx):
        ro = ctx.dir / 'readonly'; ro.mkdir(); ro.chmod(0o555)
        if not chmod_binds(ro): ctx.skip('chmod 555 does not stop writes here, even without root\'s override')
        ctx.preexec = without_root_override
        return argv_of(ctx, ro)
    return setup

RO_CASES = {
    'readonly.data_synth_out': lambda ctx, ro: ['data', 'synth', 'netflix', '--size', 'tiny', '--out', str(ro / 'nf'), '--no-progress'],
    'readonly.mf_history': lambda ctx, ro: ['mf', '--data', str(ctx.fixture('nf')), *MF_QUICK, '--history', str(ro / 'h.csv')],
    'readonly.tune_out': lambda ctx, ro: ['tune', '--data', str(ctx.fixture('nf')), *TUNE_QUICK, '--out', str(ro / 'tune')],
    'readonly.stl_random_out': lambda ctx, ro: ['stl', 'random', '--data', str(ctx.fixture('stl')), '--out', str(ro / 'r.html')],
    'readonly.spotify_prepare_out': lambda ctx, ro: ['spotify', 'prepare', '--data', str(ctx.fixture('mpd')), '--out', str(ro / 'prep')],
}

# --- the matrix -------------------------------------------------------------------------------------------------------

NF_LINE = b'7255 40 3 2005-02-12'       # the shape of a line of netflix_train.txt (ids from the tiny synth)
NAMES_JPG = mentions(r'[0-9a-f]{6,}\.jpg', what='which image file')
HALF_STAR = r"(?m)^\s*'?3\.5'?\s+\d"    # a `3.5` bucket in the rating histogram

def build_cases() -> list[Case]:
    C = Case
    cases = [
        # Netflix-format directory (load_netflix)
        C('netflix.train_is_dir', c_nf_train_is_dir, about='netflix_train.txt is a directory (data check)'),
        C('netflix.train_is_dir.mf', c_nf_train_is_dir_mf, about='netflix_train.txt is a directory (mf --data)'),
        C('netflix.half_star_train', nf_line(5, field_set(b' ', 2, b'3.5')), ok0=HALF_STAR,
          about='a 3.5 rating in netflix_train.txt'),
        C('netflix.half_star_test', nf_line(5, field_set(b' ', 2, b'3.5'), 'netflix_test.txt'), ok0=HALF_STAR + r'|half.?star',
          about='a 3.5 rating in netflix_test.txt (the histogram shows train only)'),
        C('netflix.bare_cr', nf_line(100, field_set(b' ', 1, b'40\r')), check=line_named(100),
          about='a bare \\r inside line 100 of netflix_train.txt'),
        C('netflix.plus_id', nf_line(1, field_set(b' ', 0, b'+7255')), ok0=True, check=line_named(1),
          about="'+7255' as a user id (same id as 7255: accepting it is harmless)"),
        C('netflix.id_2pow64', nf_line(50, field_set(b' ', 0, b'18446744073709551616')), check=line_named(50),
          about='a user id = 2^64 on line 50'),
        C('netflix.two_space_line', nf_line(70, lambda l: l.replace(b' ', b'  ', 1)), ok0=True, check=line_named(70),
          about='two spaces between fields on line 70'),
        C('netflix.long_line_1mib', nf_line(30, b'x' * MIB), check=all_checks(line_named(30), quote_at_most(500)),
          about='a 1 MiB line (no separators) on line 30: the error must quote at most ~200 characters'),
        C('netflix.long_line_1gib', nf_line(30, b'x' * (1024 * MIB)), check=all_checks(line_named(30), quote_at_most(500)),
          about='a 1 GiB line (no separators) on line 30: an error naming the line, neither MemoryError nor a long quote'),
        C('netflix.long_line_1mib_fields', nf_line(30, b'7255 40 3 ' + b'9' * MIB), check=all_checks(line_named(30), quote_at_most(500)),
          about='a 1 MiB date field on line 30'),
        C('netflix.non_utf8_byte', nf_line(20, field_set(b' ', 0, b'72\xff55')), check=line_named(20),
          about='a 0xff byte inside the user id on line 20'),
        C('netflix.non_utf8_line', nf_line(20, b'\xff\xfe\xe9'), check=line_named(20),
          about='a line of non-UTF-8 bytes only, line 20'),
        C('netflix.date_0001', nf_line(5, field_set(b' ', 3, b'0001-01-01')), ok0=r'0001-01-01',
          about='a rating dated 0001-01-01 (visible in date_range is OK)'),
        C('netflix.date_2999', nf_line(5, field_set(b' ', 3, b'2999-12-31')), ok0=r'2999-12-31',
          about='a rating dated 2999-12-31 (visible in date_range is OK)'),
        C('netflix.date_0001.mf', nf_line(5, field_set(b' ', 3, b'0001-01-01'), cmd='mf'), ok0=True,
          about='a rating dated 0001-01-01, trained on (mf ignores dates: exit 0 fine, no traceback)'),
        C('netflix.date_2999.usercf', nf_line(5, field_set(b' ', 3, b'2999-12-31'), cmd='usercf'), ok0=True,
          about='a rating dated 2999-12-31, fitted on (usercf)'),
        C('netflix.users_above_int64', users_line(3, b'9223372036854775808'), check=line_named(3),
          about='users.txt line 3 = 2^63 (above int64)'),
        C('netflix.users_id_2pow64', users_line(3, b'18446744073709551616'), check=line_named(3),
          about='users.txt line 3 = 2^64'),
        C('netflix.users_negative', users_line(3, b'-5'), ok0=r'negative|users_listed_without_ratings\s+[1-9]',
          about='users.txt line 3 = -5'),
        # --train / --test (load_ratings)
        C('args.train_is_dir', c_train_is_dir, about='--train is a directory'),
        C('args.test_is_dir', c_test_is_dir, about='--test is a directory'),
        C('args.header_only_train.mf', c_header_only_train, about='--train is a ratings.csv with only its header (mf)'),
        C('args.header_only_train.usercf', lambda ctx: c_header_only_train(ctx, 'usercf'),
          about='--train is a ratings.csv with only its header (usercf)'),
        C('args.whitespace_only_test', c_test_file(b'   \n\t\n  \n'), about='--test holds only blanks and newlines'),
        C('args.empty_test', c_test_file(b''), about='--test is a 0-byte file'),
        C('args.header_only_test', c_test_file(b'userId,movieId,rating,timestamp\n', train='mllatest'),
          ok0=r'\b0 test ratings|test_ratings\s+0\b', about='--test is a header-only ratings.csv (usercf)'),
        C('args.header_only_test.mf', c_test_file(b'userId,movieId,rating,timestamp\n', cmd='mf', train='mllatest'),
          ok0=r'\b0 test ratings|test_ratings\s+0\b', about='--test is a header-only ratings.csv (mf)'),
        # MovieLens 100K u.data (load_movielens, read_ratings)
        C('ml100k.timestamp_out_of_range', ml_line(10, field_set(b'\t', 3, b'99999999999999999')), check=line_named(10),
          about='u.data line 10: timestamp 1e17 s (beyond datetime64)'),
        C('ml100k.timestamp_out_of_range.file', ml_line(10, field_set(b'\t', 3, b'99999999999999999'), as_file=True),
          check=line_named(10), about='the same, `data check u.data`'),
        C('ml100k.timestamp_negative', ml_line(10, field_set(b'\t', 3, b'-86400')), ok0=r'timestamp|negative|before 1970|1969-12-31',
          about='u.data line 10: timestamp -86400 (1969-12-31; visible in date_range is OK)'),
        C('ml100k.half_star', ml_line(10, field_set(b'\t', 2, b'3.5')), ok0=HALF_STAR, about='u.data line 10: rating 3.5'),
        C('ml100k.bare_cr', ml_line(100, field_set(b'\t', 1, b'91\r')), check=line_named(100),
          about='u.data: a bare \\r inside line 100'),
        C('ml100k.non_utf8_byte', ml_line(20, field_set(b'\t', 1, b'9\xff1')), check=line_named(20),
          about='u.data: a 0xff byte in the movie id on line 20'),
        C('ml100k.long_line_1mib', ml_line(30, b'y' * MIB), check=all_checks(line_named(30), quote_at_most(500)),
          about='u.data: a 1 MiB line 30'),
        # MovieLens 1M ratings.dat
        C('ml1m.half_star', ml_line(10, field_set(b'::', 2, b'3.5'), what='ratings.dat'), ok0=HALF_STAR,
          about='ratings.dat line 10: rating 3.5'),
        C('ml1m.tab_line', ml_line(10, lambda l: l.replace(b'::', b'\t'), what='ratings.dat'), ok0=r'tab',
          check=line_named(10), about='ratings.dat line 10 separated by tabs instead of ::'),
        C('ml1m.bare_cr', ml_line(100, lambda l: l.replace(b'::', b'\r', 1), what='ratings.dat'), check=line_named(100),
          about='ratings.dat: a bare \\r in place of the first :: on line 100'),
        # a directory with no ratings file
        C('usercf.data_dir_without_ratings', c_no_ratings_dir('usercf'),
          check=mentions(r'netflix', r'u\.data|movielens', what='both formats (Netflix and MovieLens)'),
          about='usercf --data DIR where DIR holds no ratings file'),
        C('mf.data_dir_without_ratings', c_no_ratings_dir('mf'),
          check=mentions(r'netflix', r'u\.data|movielens', what='both formats (Netflix and MovieLens)'),
          about='mf --data DIR where DIR holds no ratings file'),
        C('data.check_dir_without_ratings', c_no_ratings_dir('check'),
          check=mentions(r'netflix', r'u\.data|movielens', what='both formats (Netflix and MovieLens)'),
          about='data check DIR where DIR holds no ratings file'),
        # Spotify MPD
        C('mpd.slice_is_dir', mpd_case(extra=mpd_slice_dir), about='data/mpd.slice.400-439.json is a directory'),
        C('mpd.track_wrong_type_not_last', mpd_case(first_track('duration_ms', '253434')),
          about="track 1 (not the last) of playlist 0: duration_ms is a string"),
        C('mpd.track_name_int_not_last', mpd_case(first_track('track_name', 12345)),
          about="track 1 (not the last) of playlist 0: track_name is an int"),
        C('mpd.artist_name_null', mpd_case(first_track('artist_name', None)),
          about='track 1 of playlist 0: artist_name null'),
        C('mpd.pos_true', mpd_case(first_track('pos', True)), about='track 1 of playlist 0: pos true (== 1 in Python)'),
        C('mpd.pid_outside_range', mpd_case(mpd_pid_outside), ok0=r'range|outside',
          about='playlist 0 of mpd.slice.0-39.json has pid 5000'),
        # Shop the Look
        C('stl.nonutf8_pairs.train', stl_case(stl_nonutf8('fashion.json')), about='fashion.json holds non-UTF-8 bytes'),
        C('stl.nonutf8_catalog.random', stl_case(stl_nonutf8('fashion-cat.json'), 'random'),
          about='fashion-cat.json holds non-UTF-8 bytes (stl random)'),
        C('stl.nonutf8_catalog.train', stl_case(stl_nonutf8('fashion-cat.json')),
          about='fashion-cat.json holds non-UTF-8 bytes (stl train)'),
        C('stl.truncated_jpg.random', stl_case(stl_truncate_image, 'random_embed'), check=NAMES_JPG,
          about='a product .jpg cut to a third (stl random --embed)'),
        C('stl.truncated_jpg.train', stl_case(stl_truncate_image), check=NAMES_JPG, about='a product .jpg cut to a third (stl train)'),
        C('stl.nonimage_jpg.random', stl_case(stl_nonimage, 'random_embed'), check=NAMES_JPG, about='a product .jpg that is HTML text (random --embed)'),
        C('stl.nonimage_jpg.train', stl_case(stl_nonimage), check=NAMES_JPG, about='a product .jpg that is HTML text (stl train)'),
        C('stl.no_usable_pairs.train', stl_case(stl_no_images), about='images/ is empty: no pair is usable'),
        C('stl.empty_pair_file.train', stl_case(stl_empty_pairs), about='fashion.json is 0 bytes'),
        C('stl.synth_out_is_file', c_stl_synth_out_file, about='stl synth --out an existing file'),
        C('stl.recommend_out_is_file', c_stl_recommend_out_file, about='stl recommend --out an existing file'),
        # tune
        C('tune.fix_lr_abc', c_tune_fix, about='tune --fix lr=abc'),
        C('tune.storage_question_mark', c_tune_storage('st/a?b.db'), check=file_at('st/a?b.db'), ok0=True,
          about="tune --storage DIR/a?b.db (a '?' in a SQLite path)"),
        C('tune.storage_percent41', c_tune_storage('st/x%41.db'), check=file_at('st/x%41.db'), ok0=True,
          about="tune --storage DIR/x%41.db (a '%41' in a SQLite path)"),
        # mf --history, read-only outputs
        C('mf.history_nonexistent', c_history_nonexistent, check=nothing_trained,
          about='mf --history /nonexistent/sub/h.csv must fail before training'),
        C('mf.history_parent_is_file', c_history_parent_file, check=nothing_trained,
          about='mf --history FILE/sub/h.csv (a file in the way) must fail before training'),
    ]
    cases += [C(name, readonly(f), about=f'{name.split(".", 1)[1]} into a chmod-555 folder') for name, f in RO_CASES.items()]
    cases += [C(name, disk_full(f, n), check=nothing_half_written(n, whole),
                about=f'{name.split(".", 1)[1]} on a full disk (no file past {n} bytes)') for name, (f, n, whole) in DISK_CASES.items()]
    return cases

# --- a full disk ------------------------------------------------------------------------------------------------------

DISK_BYTES = 16 << 10          # any one file may hold this much; the next write fails

def disk_full(argv_of, nbytes=DISK_BYTES):
    "A case whose outputs go into `ctx.dir/out` on a 'disk' where a file cannot grow past `nbytes`."
    def setup(ctx):
        ctx.preexec = file_size_limit(nbytes)
        return argv_of(ctx, ctx.dir / 'out')
    return setup

def nothing_half_written(nbytes=DISK_BYTES, all_or_nothing=False):
    """A check: no file of the outputs was cut at the limit and no temporary file is left; with `all_or_nothing` (a data
    set), a failed command leaves no file at all. SQLite databases are left out: SQLite's journal keeps them whole."""
    def check(r, ctx):
        out = ctx.dir / 'out'
        files = [p for p in out.rglob('*') if p.is_file()] if out.exists() else []
        rel = lambda ps: sorted(str(p.relative_to(ctx.dir)) for p in ps)
        cut = [p for p in files if p.stat().st_size == nbytes and p.suffix != '.db']
        tmp = [p for p in out.rglob('*') if '.tmp' in p.name or '.partial' in p.name] if out.exists() else []
        if cut: return f'half-written files left: {rel(cut)}'
        if tmp: return f'temporary files left: {rel(tmp)}'
        if all_or_nothing and r['rc'] == 2 and files: return f'a failed data set left some files: {rel(files)}'
        if r['rc'] == 2 and str(out) not in r['error_line']: return 'the error does not name the file or folder it could not write'
        if r['rc'] == 0: return 'exit 0: the write past the limit was not reported'
    return check

DISK_CASES = {   # name: (argv, the limit, all or nothing)
    'disk_full.data_synth_out': (lambda ctx, out: ['data', 'synth', 'netflix', '--size', 'tiny', '--out', str(out / 'nf'), '--no-progress'], DISK_BYTES, True),
    'disk_full.data_synth_movielens': (lambda ctx, out: ['data', 'synth', 'movielens', '--size', 'tiny', '--out', str(out / 'ml'), '--no-progress'], DISK_BYTES, True),
    'disk_full.spotify_synth': (lambda ctx, out: ['spotify', 'synth', '--preset', 'tiny', '--out', str(out / 'mpd')], DISK_BYTES, True),
    'disk_full.stl_synth': (lambda ctx, out: ['stl', 'synth', '--preset', 'tiny', '--out', str(out / 'stl'), '--no-progress'], 1024, True),
    'disk_full.tune_out': (lambda ctx, out: ['tune', '--data', str(ctx.fixture('nf')), *TUNE_QUICK, '--out', str(out / 'tune')], DISK_BYTES, False),
    'disk_full.stl_random_out': (lambda ctx, out: ['stl', 'random', '--data', str(ctx.fixture('stl')), '--out', str(out / 'r.html')], 1024, False),
    'disk_full.spotify_prepare_out': (lambda ctx, out: ['spotify', 'prepare', '--data', str(ctx.fixture('mpd')), '--out', str(out / 'prep')], DISK_BYTES, False),
    'disk_full.run_out': (lambda ctx, out: ['run', '--data', str(ctx.fixture('nf')), '--out', str(out / 'run'), '--trials', '1',
                                            '--tune-epochs', '2', '--no-progress'], DISK_BYTES, False),
}

# ----------------------------------------------------------------------------------------------------------------------
# running and judging

def cli_env(tmp: Path) -> dict:
    env = dict(os.environ, JAX_PLATFORMS='cpu', CUDA_VISIBLE_DEVICES='', PYTHONUNBUFFERED='1',
               RECSYS_NB_CACHE=str(tmp / 'cache'), MPLCONFIGDIR=str(tmp / 'mpl'), TQDM_DISABLE='1')
    env['PYTHONPATH'] = str(ROOT) + (os.pathsep + env['PYTHONPATH'] if env.get('PYTHONPATH') else '')
    return env

def make_runner(python: str, env: dict):
    def run(argv, cwd, timeout, preexec=None) -> dict:
        cmd = [python, '-m', 'recsys_nb.cli', *argv]
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, start_new_session=True, preexec_fn=preexec)
        def kill():
            try: os.killpg(p.pid, signal.SIGKILL)          # this command's own process group, nothing else
            except ProcessLookupError: pass
        try:
            out, err = p.communicate(timeout=timeout); rc, timed_out = p.returncode, False
        except subprocess.TimeoutExpired:
            kill(); out, err = p.communicate(); rc, timed_out = None, True
        except BaseException:                              # Ctrl-C or SIGTERM of this script: leave nothing running
            kill(); raise
        dec = lambda b: b.decode('utf-8', 'replace')
        return {'rc': rc, 'timed_out': timed_out, 'stdout': dec(out), 'stderr': dec(err),
                'seconds': round(time.perf_counter() - t0, 2), 'cmd': cmd}
    return run

def traceback_tail(text: str, n=3) -> list[str]:
    "The last `n` non-blank lines of the last traceback in `text`."
    i = text.rfind('Traceback (most recent call last)')
    if i < 0: return []
    return [l for l in text[i:].splitlines() if l.strip()][-n:]

# a tqdm progress-bar redraw: `desc: 12%|███ | 3/25 [00:01<00:07, 2.9it/s, ...]` (bounded, so that a 1 MiB line is cheap)
BAR = re.compile(r'[^|\r\n]{0,100}?\d{1,3}%\|[^|\r\n]{0,200}\|[^\[\r\n]{0,100}\[[^\]\r\n]{0,300}\]')

def stderr_lines(text: str) -> tuple[list[str], bool]:
    "The non-blank lines of `text` with tqdm progress-bar redraws taken out, and whether there were any."
    lines, bars = [], False
    for seg in re.split(r'[\r\n]+', text):
        head, tail = seg[:4096], seg[4096:]      # a bar is short: look for it at the start of a segment only
        clean = (BAR.sub('', head) if '%|' in head else head) + tail
        bars |= clean != seg
        if clean.strip(): lines.append(clean)
    return lines, bars

def traceback_origin(text: str) -> str:
    "The deepest `recsys_nb` frame of the last traceback in `text` (where the project let the error through)."
    i = text.rfind('Traceback (most recent call last)')
    frames = re.findall(r'File "([^"]*recsys_nb[/\\][^"]+)", line (\d+), in (\S+)', text[i:]) if i >= 0 else []
    if not frames: return ''
    f, n, fn = frames[-1]
    return f"{Path(f).relative_to(ROOT) if Path(f).is_relative_to(ROOT) else f}:{n} in {fn}"

def judge(case: Case, ctx: Ctx, r: dict) -> tuple[str, str]:
    "(verdict, note) of one result."
    err_lines = r['err_lines']
    tb = 'Traceback (most recent call last)' in r['stderr'] or 'Traceback (most recent call last)' in r['stdout']
    if r['timed_out']: return 'BAD', f"no answer within the timeout ({r['seconds']:.0f} s)"
    if tb: return 'BAD', f"traceback, exit {r['rc']}: " + ' | '.join(traceback_tail(r['stderr'] + r['stdout'], 1))
    if r['rc'] == 2:
        if not err_lines: return 'WEAK', 'exit 2 with nothing on stderr'
        if case.check and (p := case.check(r, ctx)): return 'WEAK', p
        if not re.search(r'error', r['error_line'], re.I): return 'WEAK', "the last stderr line is not an 'error:' line"
        if len(err_lines) > 1: return 'WEAK', f'stderr holds {len(err_lines)} lines, not one error line'
        return 'OK', ''
    if r['rc'] == 0:
        if case.check and (p := case.check(r, ctx)): return 'SILENT', p
        if case.ok0 is True: return 'OK', 'exit 0 (harmless input)'
        if isinstance(case.ok0, str):
            base = str(ctx.fx.base.parent)          # paths hold the case's name: take them out before matching
            text = re.sub(re.escape(base) + r'[^\s\'",\]]*', '<path>', r['stdout'] + '\n' + r['stderr'])
            m = re.search(case.ok0, text)
            if m: return 'OK', f'exit 0, reported: {m.group(0).strip()!r}'
        return 'SILENT', 'exit 0: the problem is neither refused nor reported'
    return 'BAD', f"exit {r['rc']}" + (f" (signal {-r['rc']})" if r['rc'] and r['rc'] < 0 else '')

def run_case(case: Case, base: Path, fx: Fixtures, run, timeout) -> dict:
    d = base / 'cases' / case.name; d.mkdir(parents=True)
    ctx = Ctx(d, fx)
    res = {'name': case.name, 'group': case.name.split('.')[0], 'about': case.about}
    try: argv = case.setup(ctx)
    except Exception as e:
        return {**res, 'verdict': 'BAD', 'rc': None, 'seconds': 0, 'first_stderr_line': '', 'error_line': '',
                'note': f'setup failed: {type(e).__name__}: {e}', 'command': '', 'traceback_tail': []}
    cmd_text = 'recsys-nb ' + shlex.join(argv)
    res['command'] = cmd_text
    if ctx.skip_reason:
        return {**res, 'verdict': 'SKIP', 'rc': None, 'seconds': 0, 'first_stderr_line': '', 'error_line': '',
                'note': ctx.skip_reason, 'traceback_tail': []}
    r = run(argv, d, timeout, ctx.preexec)
    err_lines, bars = stderr_lines(r['stderr'])
    r['err_lines'], r['error_line'] = err_lines, (err_lines[-1] if err_lines else '')
    verdict, note = judge(case, ctx, r)
    if bars and r['rc'] == 2 and verdict == 'OK': note = 'progress-bar redraws on stderr around the error (ignored)'
    return {**res, 'verdict': verdict, 'rc': r['rc'], 'seconds': r['seconds'], 'note': note,
            'first_stderr_line': err_lines[0] if err_lines else '', 'progress_bars_on_stderr': bars, 'error_line': r['error_line'][:2000],
            'error_line_chars': len(r['error_line']), 'stderr_lines': len(err_lines),
            'traceback_tail': traceback_tail(r['stderr'] + '\n' + r['stdout']),
            'traceback_origin': traceback_origin(r['stderr'] + '\n' + r['stdout']),
            'stderr_tail': r['stderr'][-3000:], 'stdout_tail': r['stdout'][-1500:]}

def short(s: str, n=160) -> str:
    s = s.replace('\r', '\\r')
    return s if len(s) <= n else s[:n - 1] + '…'

def print_row(r: dict, out):
    rc = 'T/O' if r['rc'] is None and r['verdict'] == 'BAD' and 'timeout' in r['note'] else ('-' if r['rc'] is None else r['rc'])
    print(f"{r['verdict']:<6} {str(rc):>3} {r['seconds']:>6.1f}s  {r['name']:<40} {short(r['first_stderr_line'])}", file=out, flush=True)
    if r['note']: print(f"{'':>18}  -> {short(r['note'], 200)}", file=out, flush=True)

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--only', action='append', metavar='SUBSTR', help='run only the cases whose name contains SUBSTR (repeatable)')
    ap.add_argument('--json', action='store_true', help='print the results as one JSON list on stdout (the table goes to stderr)')
    ap.add_argument('--keep', metavar='DIR', help='make the files in DIR (created) and keep them')
    ap.add_argument('--timeout', type=float, default=120, help='seconds a case may run (default 120); a timeout is BAD')
    ap.add_argument('--jobs', type=int, default=1, help='cases run at once (default 1)')
    ap.add_argument('--strict', action='store_true', help='exit 1 also when a case is SILENT or WEAK')
    ap.add_argument('--python', default=str(VENV_PY if VENV_PY.exists() else sys.executable),
                    help='the interpreter that runs `-m recsys_nb.cli` (default: the project .venv)')
    ap.add_argument('--list', action='store_true', help='list the case names and exit')
    a = ap.parse_args(argv)
    cases = build_cases()
    if a.only: cases = [c for c in cases if any(s in c.name for s in a.only)]
    if a.list:
        for c in cases: print(f'{c.name:<40} {c.about}')
        return 0
    if not cases: print(f'no case matches {a.only}', file=sys.stderr); return 2
    out = sys.stderr if a.json else sys.stdout
    if a.keep:
        base = Path(a.keep).resolve(); base.mkdir(parents=True, exist_ok=True)
        if any(base.iterdir()): print(f'--keep {base}: the folder is not empty', file=sys.stderr); return 2
    else: base = Path(tempfile.mkdtemp(prefix='recsys_hostile_'))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))   # so that `finally` removes the files and kills the case
    t0 = time.perf_counter()
    results = []
    try:
        run = make_runner(a.python, cli_env(base))
        fx = Fixtures(base, run)
        print(f'# {len(cases)} cases, timeout {a.timeout:g} s, files in {base}', file=out, flush=True)
        print(f"{'VERDICT':<6} {'RC':>3} {'TIME':>7}  {'CASE':<40} FIRST LINE OF STDERR", file=out, flush=True)
        if a.jobs > 1:
            with ThreadPoolExecutor(a.jobs) as ex:
                for r in ex.map(lambda c: run_case(c, base, fx, run, a.timeout), cases):
                    results.append(r); print_row(r, out)
        else:
            for c in cases:
                r = run_case(c, base, fx, run, a.timeout); results.append(r); print_row(r, out)
    finally:
        for d in base.rglob('readonly'):             # give the chmod-555 folders back their write bit, so rmtree works
            try: d.chmod(0o755)
            except OSError: pass
        if not a.keep: shutil.rmtree(base, ignore_errors=True)
    secs = time.perf_counter() - t0
    counts = {v: sum(r['verdict'] == v for r in results) for v in ('OK', 'BAD', 'SILENT', 'WEAK', 'SKIP')}
    print(f"# {len(results)} cases in {secs:.0f} s: " + ', '.join(f'{k} {v}' for k, v in counts.items()), file=out, flush=True)
    bad = [r for r in results if r['verdict'] == 'BAD']
    for r in bad:
        print(f"\n## BAD {r['name']}: {r['note']}\n   $ {r['command']}", file=out)
        for l in r['traceback_tail']: print(f'   | {short(l, 300)}', file=out)
        if r.get('traceback_origin'): print(f"   deepest project frame: {r['traceback_origin']}", file=out)
    if a.keep: print(f'# files kept in {base}', file=out)
    if a.json: print(json.dumps(results, indent=1))
    failing = counts['BAD'] + (counts['SILENT'] + counts['WEAK'] if a.strict else 0)
    return 1 if failing else 0

if __name__ == '__main__': sys.exit(main())

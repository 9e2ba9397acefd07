"""The Netflix Prize layout at full size: write it (`recsys_nb.synth.synth_prize`, 100,480,507 ratings in 17,770 movie
files), read it once without a cache (`recsys_nb.data.read_prize`: parse, sort, take the probe out, write the cache),
read it again from the cache (memory-mapped), and build the `RatingData` from that.

    python benchmarks/prize_io.py [--size prize] [--dir DIR] [--keep] [--baseline]

Each step runs in its own process, so that each peak RSS is its own. The first read follows the write, so the text is
in the page cache (as it is after any recent read). `--baseline` also times the one-file-at-a-time reader
(`read_prize_movie_file` on every file, nothing concatenated). Progress goes to stderr; one JSON object is the last line
of stdout, and is written to benchmarks/results/prize_io.json.
"""
from __future__ import annotations
import argparse, json, os, platform, resource, shutil, subprocess, sys, tempfile, time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / 'results' / 'prize_io.json'


def log(*a): print(*a, file=sys.stderr, flush=True)
def peak_rss_gib() -> float: return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
def tree_bytes(p: Path) -> int: return sum(f.stat().st_size for f in p.rglob('*') if f.is_file())


def step(name: str, data: Path, cache: Path, size: str) -> dict:
    "One measured step, in this (child) process."
    os.environ['RECSYS_NB_CACHE'] = str(cache)
    from recsys_nb.data import read_prize, read_prize_movie_file
    from recsys_nb.synth import synth_prize
    t0 = time.perf_counter()                          # the imports are not timed
    if name == 'synth':
        synth_prize(data, size, seed=0, progress=True)
        out = {'seconds': time.perf_counter() - t0}
    elif name in ('first_read', 'cached_read'):
        p = read_prize(data, progress=True)
        out = {'seconds': time.perf_counter() - t0, 'cached': p.cached, 'train': len(p.train['user']), 'test': len(p.test['user']),
               'users': p.n_users, 'movies': p.n_movies}
    elif name == 'rating_data':
        p = read_prize(data)
        t1 = time.perf_counter()
        d = p.rating_data()
        out = {'seconds': time.perf_counter() - t1, 'frame_bytes': int(d.train.memory_usage().sum() + d.test.memory_usage().sum())}
    elif name == 'baseline':
        n = sum(len(read_prize_movie_file(f)) for f in sorted((data / 'training_set').glob('mv_*.txt')))
        out = {'seconds': time.perf_counter() - t0, 'ratings': n}
    else: raise ValueError(name)
    return {**out, 'peak_rss_gib': peak_rss_gib()}


def child(name: str, data: Path, cache: Path, size: str) -> dict:
    log(f'[prize_io] {name} …')
    r = subprocess.run([sys.executable, __file__, '--step', name, '--dir', str(data), '--cache', str(cache), '--size', size],
                       stdout=subprocess.PIPE, text=True)
    if r.returncode: raise SystemExit(f'prize_io: step {name} failed (exit {r.returncode})')
    out = json.loads(r.stdout.strip().splitlines()[-1])
    log(f'[prize_io] {name}: {out["seconds"]:.2f} s, peak RSS {out["peak_rss_gib"]:.2f} GiB')
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--size', default='prize', help='a preset of recsys_nb.synth.PRIZE_PRESETS (default: prize, the full size)')
    ap.add_argument('--dir', help='where to write the dataset (default: a new temporary directory, removed at the end)')
    ap.add_argument('--cache', help=argparse.SUPPRESS)
    ap.add_argument('--keep', action='store_true', help='keep the dataset and its cache')
    ap.add_argument('--baseline', action='store_true', help='also time reading the files one at a time with pandas')
    ap.add_argument('--step', help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.step:
        print(json.dumps(step(a.step, Path(a.dir), Path(a.cache), a.size))); return
    work = Path(a.dir).parent if a.dir else Path(tempfile.mkdtemp(prefix='prize_io-'))
    data = Path(a.dir) if a.dir else work / 'prize'
    cache = data.with_name(data.name + '-cache')
    shutil.rmtree(cache, ignore_errors=True)
    load = os.getloadavg()
    try:
        synth = child('synth', data, cache, a.size)
        first = child('first_read', data, cache, a.size)
        cached = child('cached_read', data, cache, a.size)
        frame = child('rating_data', data, cache, a.size)
        base = child('baseline', data, cache, a.size) if a.baseline else None
        import numpy, pandas, pyarrow
        files = len(list((data / 'training_set').glob('mv_*.txt')))
        res = {'size': a.size, 'users': first['users'], 'movies': first['movies'], 'files': files,
               'ratings': first['train'] + first['test'], 'train_ratings': first['train'], 'probe_ratings': first['test'],
               'text_bytes': tree_bytes(data), 'cache_bytes': tree_bytes(cache),
               'synth_s': round(synth['seconds'], 1), 'synth_peak_rss_gib': round(synth['peak_rss_gib'], 2),
               'first_read_s': round(first['seconds'], 1), 'first_read_peak_rss_gib': round(first['peak_rss_gib'], 2),
               'cached_read_s': round(cached['seconds'], 3), 'cached_read_peak_rss_gib': round(cached['peak_rss_gib'], 2),
               'cache_hit': cached['cached'] and not first['cached'],
               'rating_data_s': round(frame['seconds'], 1), 'rating_data_peak_rss_gib': round(frame['peak_rss_gib'], 2),
               'rating_data_frame_gib': round(frame['frame_bytes'] / 2**30, 2),
               **({'per_file_pandas_read_s': round(base['seconds'], 1), 'per_file_pandas_peak_rss_gib': round(base['peak_rss_gib'], 2)} if base else {}),
               'targets': {'synth_s': 300, 'first_read_s': 60},
               'cpu_cores': os.cpu_count(), 'load_average_at_start': [round(x, 2) for x in load],
               'page_cache': 'warm (the first read follows the write)',
               'versions': {'python': platform.python_version(), 'numpy': numpy.__version__, 'pandas': pandas.__version__,
                            'pyarrow': pyarrow.__version__},
               'command': 'python benchmarks/prize_io.py' + ''.join(f' {x}' for x in sys.argv[1:])}
    finally:
        if not a.keep: shutil.rmtree(work if not a.dir else cache, ignore_errors=True)
        if not a.keep and a.dir: shutil.rmtree(data, ignore_errors=True)
    if a.size == 'prize':
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps(res, indent=1) + '\n')
    print(json.dumps(res))


if __name__ == '__main__':
    main()

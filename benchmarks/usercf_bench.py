"""Benchmarks of recsys_nb.usercf; prints one JSON object (and writes it with --out).

  python benchmarks/usercf_bench.py netflix   # the course notebook's path vs ours and vs the usercf command, netflix-preset shape
  python benchmarks/usercf_bench.py ml100k    # Surprise's 5-fold protocol on MovieLens 100K, KNNBasic/KNNWithMeans vs ours
  python benchmarks/usercf_bench.py scale     # k=40 on 100,000 users x 20,000 movies x 10M ratings (takes a while)

Every timed path runs in its own subprocess, which reports wall time and peak RSS (resource.getrusage). The paths
of one comparison run one after another in the same invocation, so they share the machine's conditions.
"""
from __future__ import annotations
import argparse, json, os, resource, subprocess, sys, time
from pathlib import Path
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ML100K = ROOT.parent / 'shared' / 'data' / 'ml-100k' / 'u.data'

def peak_rss_gb() -> float:
    """Peak resident set size of this process, GB: VmHWM of /proc/self/status (getrusage's ru_maxrss would include the
    parent's size at fork time, which Linux carries across execve)."""
    try:
        for line in Path('/proc/self/status').read_text().splitlines():
            if line.startswith('VmHWM:'): return int(line.split()[1]) * 1024 / 1e9
    except OSError: pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9

def run_worker(args:list, timeout=7200) -> dict:
    "Run this script as a worker subprocess; its last stdout line is a JSON result."
    out = subprocess.run([sys.executable, __file__, '--worker', *map(str, args)], capture_output=True, text=True, timeout=timeout)
    if out.returncode: raise RuntimeError(f'worker {args} failed:\n{out.stderr[-3000:]}')
    return json.loads(out.stdout.strip().splitlines()[-1])

def load_npz(path):
    import scipy.sparse as sp
    z = np.load(path)
    R = sp.csr_matrix((z['r_data'], z['r_indices'], z['r_indptr']), shape=tuple(z['shape']))
    T = sp.csr_matrix((z['t_data'], z['t_indices'], z['t_indptr']), shape=tuple(z['shape']))
    return R, T

# ------------------------------------------------------------------ workers (one timed path each)
def worker_seed(path):
    "The course notebook's path: sklearn cosine on the sparse train matrix, (S @ X) / (S @ (X != 0)) dense float64, masked RMSE."
    from sklearn.metrics.pairwise import cosine_similarity
    R, T = load_npz(path)
    X_train, X_test = R.astype(np.int64), T.astype(np.int64)          # the notebook's matrices are int64
    base = peak_rss_gb(); t0 = time.perf_counter()
    S = cosine_similarity(X_train)
    X = X_train.toarray().astype(np.float64)
    pred = (S @ X) / (S @ (X != 0))
    Xt = X_test.toarray(); mask = Xt != 0
    rmse = float(np.sqrt(((Xt - mask * pred) ** 2).sum() / mask.sum()))
    return {'path': 'seed', 'test_rmse': rmse, 'seconds': time.perf_counter() - t0, 'peak_rss_gb': peak_rss_gb(),
            'rss_after_loading_gb': base}

def load_kernels():
    """Load our compiled code before the clock starts, as importing sklearn or Surprise loads theirs: PyTorch (its int8
    product) and the Numba kernels (from Numba's on-disk cache, compiled on first use), through a toy fit and predict."""
    from recsys_nb.usercf import UserCF
    import torch
    toy = ([0, 0, 1, 1, 2], [0, 1, 0, 1, 1], [5., 3., 4., 2., 1.])
    for k in (None, 1): UserCF('cosine', k=k).fit(toy, shape=(3, 2)).predict_pairs(np.array([2]), np.array([0]))

def worker_ours(path, backend='numpy', device=None):
    "Ours with the seed's similarity: fit + predict the test pairs + RMSE."
    from recsys_nb.usercf import UserCF
    load_kernels()
    R, T = load_npz(path)
    T = T.tocoo()
    base = peak_rss_gb(); t0 = time.perf_counter()
    model = UserCF('cosine', backend=backend, device=device if device != 'None' else None).fit(R)
    t1 = time.perf_counter()
    p = model.predict_pairs(T.row, T.col)
    rmse = float(np.sqrt(np.mean((p - T.data) ** 2)))
    return {'path': f'ours ({backend})', 'test_rmse': rmse, 'seconds': time.perf_counter() - t0,
            'fit_seconds': t1 - t0, 'peak_rss_gb': peak_rss_gb(), 'rss_after_loading_gb': base,
            'fallbacks': model.fallbacks_['total'], 'device': str(model.engine.device)}

def _ml_folds():
    from recsys_nb.data import read_ratings, make_rating_data
    from recsys_nb.splits import kfold_split
    return [make_rating_data(tr, te) for tr, te in kfold_split(read_ratings(ML100K), 5, 0)]

def worker_surprise(algo, sim):
    from surprise import Dataset, Reader, KNNBasic, KNNWithMeans, accuracy
    from surprise.model_selection import KFold
    cls = {'KNNBasic': KNNBasic, 'KNNWithMeans': KNNWithMeans}[algo]
    data = Dataset.load_from_file(str(ML100K), Reader('ml-100k'))
    rmses, maes, secs = [], [], 0.
    for trainset, testset in KFold(n_splits=5, random_state=0).split(data):
        t0 = time.perf_counter()
        preds = cls(k=40, sim_options={'name': sim, 'user_based': True}, verbose=False).fit(trainset).test(testset)
        secs += time.perf_counter() - t0
        rmses.append(accuracy.rmse(preds, verbose=False)); maes.append(accuracy.mae(preds, verbose=False))
    return {'impl': 'surprise', 'algo': algo, 'sim': sim, 'rmse': float(np.mean(rmses)), 'mae': float(np.mean(maes)),
            'seconds': secs, 'peak_rss_gb': peak_rss_gb()}

def worker_ours_ml(algo, sim):
    from recsys_nb.usercf import UserCF
    from recsys_nb.metrics import rmse, mae
    load_kernels()
    folds = _ml_folds()
    rmses, maes, secs = [], [], 0.
    for d in folds:
        u, m, r = d.triples('test')
        t0 = time.perf_counter()
        p = UserCF('cosine_common' if sim == 'cosine' else sim, k=40, center=algo == 'KNNWithMeans',
                   fallback='global_mean').fit(d).predict_pairs(u, m)
        secs += time.perf_counter() - t0
        rmses.append(rmse(p, r)); maes.append(mae(p, r))
    return {'impl': 'ours', 'algo': algo, 'sim': sim, 'rmse': float(np.mean(rmses)), 'mae': float(np.mean(maes)),
            'seconds': secs, 'peak_rss_gb': peak_rss_gb()}

def worker_scale(path, k, neighbourhood, memory_gb):
    from recsys_nb.usercf import UserCF
    load_kernels()
    R, T = load_npz(path)
    T = T.tocoo()
    base = peak_rss_gb(); t0 = time.perf_counter()
    model = UserCF('cosine', k=int(k), neighbourhood=neighbourhood, memory_budget=float(memory_gb)).fit(R)
    t1 = time.perf_counter()
    p = model.predict_pairs(T.row, T.col)
    return {'users': R.shape[0], 'movies': R.shape[1], 'train_ratings': int(R.nnz), 'test_ratings': int(T.nnz),
            'max_raters_per_movie': int(np.bincount(R.indices).max()),
            'sim': 'cosine', 'k': int(k), 'neighbourhood': neighbourhood, 'memory_budget_gb': float(memory_gb),
            'stored_similarity': model.S is not None, 'test_rmse': float(np.sqrt(np.mean((p - T.data) ** 2))),
            'fit_seconds': t1 - t0, 'predict_seconds': time.perf_counter() - t1, 'seconds': time.perf_counter() - t0,
            'peak_rss_gb': peak_rss_gb(), 'rss_after_loading_gb': base, 'fallbacks': model.fallbacks_}

WORKERS = {'seed': worker_seed, 'ours': worker_ours, 'surprise': worker_surprise, 'ours_ml': worker_ours_ml,
           'scale': worker_scale}

# ------------------------------------------------------------------ data preparation (untimed)
def save_npz(path, R, T):
    np.savez(path, r_data=R.data, r_indices=R.indices, r_indptr=R.indptr, t_data=T.data, t_indices=T.indices,
             t_indptr=T.indptr, shape=np.array(R.shape))

def netflix_npz(work:Path) -> Path:
    "The synthetic netflix-preset dataset, written once in the course's format, loaded by recsys_nb.data, cached as npz."
    from recsys_nb.data import load_netflix
    from recsys_nb.synth import synth_netflix
    path = work / 'netflix.npz'
    if not path.exists():
        d = work / 'netflix'
        if not (d / 'netflix_test.txt').exists(): synth_netflix(d, size='netflix', seed=0)
        data = load_netflix(d)
        save_npz(path, data.matrix('train'), data.matrix('test'))
    return path

def scale_npz(work:Path, n_users=100_000, n_movies=20_000, n_ratings=10_000_000, test_frac=0.1, seed=0) -> Path:
    """Synthetic planted-structure ratings at scale: log-normal user activity, Zipf-like movie popularity, biases plus a
    rank-8 interaction plus noise, rounded to 1..5 stars; a seeded random 10% of the ratings is the test set.
    (Written here because recsys_nb.synth.synth_ratings refuses this size: 'cannot distribute counts under the caps'.)"""
    import scipy.sparse as sp
    path = work / f'scale_{n_users}_{n_movies}_{n_ratings}_seed{seed}.npz'
    if path.exists(): return path
    rng = np.random.default_rng(seed)
    activity = rng.lognormal(0., 1., n_users)
    counts = np.clip(np.rint(activity / activity.sum() * n_ratings * 1.12), 5, n_movies // 2).astype(np.int64)
    pop = 1. / (rng.permutation(n_movies) + 10.) ** 0.9
    users = np.repeat(np.arange(n_users), counts)
    movies = rng.choice(n_movies, size=len(users), p=pop / pop.sum())
    key = np.unique(users * n_movies + movies)                  # drop repeated draws
    key = key[np.sort(rng.permutation(len(key))[:n_ratings])] if len(key) > n_ratings else key
    u, m = key // n_movies, key % n_movies
    rank = 8
    P, Q = rng.normal(0, .75 / rank ** .25, (n_users, rank)), rng.normal(0, .75 / rank ** .25, (n_movies, rank))
    score = 3.55 + rng.normal(0, .35, n_users)[u] + rng.normal(0, .45, n_movies)[m] + np.einsum('nk,nk->n', P[u], Q[m])
    r = np.clip(np.rint(score + rng.normal(0, .9, len(u))), 1, 5).astype(np.float32)
    test = rng.random(len(u)) < test_frac
    mat = lambda k: sp.csr_matrix((r[k], (u[k], m[k])), shape=(n_users, n_movies))
    save_npz(path, mat(~test), mat(test))
    return path

# ------------------------------------------------------------------ benchmarks
def run_command(data_dir:Path) -> dict:
    "The `recsys-nb usercf` command on the course-format files, as a user runs it: wall time (reading included) and its JSON."
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, '-m', 'recsys_nb.cli', 'usercf', '--data', str(data_dir), '--json'],
                         capture_output=True, text=True, cwd=ROOT, timeout=3600)
    wall = time.perf_counter() - t0
    if out.returncode: raise RuntimeError(f'recsys-nb usercf failed:\n{out.stderr[-3000:]}')
    got = json.loads(out.stdout)
    return {'path': 'recsys-nb usercf', 'test_rmse': got['test_rmse'], 'seconds': got['seconds'],
            'fit_seconds': got['fit_seconds'], 'predict_seconds': got['predict_seconds'],
            'load_seconds': got.get('load_seconds'), 'wall_seconds': wall,
            'wall_over_seconds': wall / got['seconds']}

def bench_netflix(work:Path, repeats=2) -> dict:
    path = netflix_npz(work)
    runs = []
    for i in range(repeats):                 # ours, seed, the command, ...: the same conditions for all three
        runs.append(run_worker(['ours', path, 'numpy', 'None']))
        runs.append(run_worker(['seed', path]))
        runs.append(run_command(work / 'netflix'))
    ours = [r for r in runs if r['path'].startswith('ours')]; seed = [r for r in runs if r['path'] == 'seed']
    cmd = [r for r in runs if r['path'] == 'recsys-nb usercf']
    t_o, t_s, t_c = (np.mean([r['seconds'] for r in x]) for x in (ours, seed, cmd))
    m_o, m_s = max(r['peak_rss_gb'] for r in ours), max(r['peak_rss_gb'] for r in seed)
    return {'shape': 'synthetic netflix preset (10,000 users x 10,000 movies, 6,897,746 train, 1,719,466 test)',
            'runs': runs, 'seed_seconds': t_s, 'ours_seconds': t_o, 'speedup': t_s / t_o,
            'command_seconds': t_c, 'command_speedup': t_s / t_c,
            'command_load_seconds': float(np.mean([r['load_seconds'] for r in cmd])),
            'command_wall_seconds': float(np.mean([r['wall_seconds'] for r in cmd])),
            'command_wall_over_seconds': float(np.mean([r['wall_over_seconds'] for r in cmd])),
            'seed_peak_rss_gb': m_s, 'ours_peak_rss_gb': m_o, 'memory_ratio': m_o / m_s,
            'test_rmse_seed': seed[0]['test_rmse'], 'test_rmse_ours': ours[0]['test_rmse'],
            'test_rmse_command': cmd[0]['test_rmse'],
            'abs_rmse_difference': abs(seed[0]['test_rmse'] - ours[0]['test_rmse'])}

def bench_ml100k(configs=(('KNNBasic', 'msd'), ('KNNBasic', 'cosine'), ('KNNBasic', 'pearson'), ('KNNWithMeans', 'msd'))) -> dict:
    if not ML100K.exists(): return {'skipped': f'{ML100K} not found'}
    rows = []
    for algo, sim in configs:
        s = run_worker(['surprise', algo, sim]); o = run_worker(['ours_ml', algo, sim])
        rows += [s, o]
        print(f'[ml100k] {algo} {sim}: surprise {s["seconds"]:.2f}s rmse {s["rmse"]:.4f} | ours {o["seconds"]:.2f}s rmse {o["rmse"]:.4f}',
              file=sys.stderr, flush=True)
    pairs = [(rows[i], rows[i + 1]) for i in range(0, len(rows), 2)]
    return {'protocol': 'MovieLens 100K, KFold(n_splits=5, random_state=0), k=40, user-based; fit+test time over 5 folds',
            'rows': rows, 'speedups': [s['seconds'] / o['seconds'] for s, o in pairs],
            'max_abs_rmse_difference': max(abs(s['rmse'] - o['rmse']) for s, o in pairs)}

def bench_scale(work:Path, k=40, neighbourhood='raters', memory_gb=4.) -> dict:
    path = scale_npz(work)
    return run_worker(['scale', path, k, neighbourhood, memory_gb], timeout=4 * 3600)

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('parts', nargs='*', default=['netflix', 'ml100k'], choices=['netflix', 'ml100k', 'scale'])
    p.add_argument('--work', default='/tmp/usercf_bench', help='where generated data is cached')
    p.add_argument('--out', help='also write the JSON here')
    p.add_argument('--repeats', type=int, default=2, help='netflix: alternating runs of each path')
    p.add_argument('--neighbourhood', default='raters', help="scale: 'raters' or 'top_k'")
    p.add_argument('--memory-gb', type=float, default=4., help='scale: memory budget')
    a = p.parse_args(argv)
    work = Path(a.work); work.mkdir(parents=True, exist_ok=True)
    result = {'machine': {'cpus': os.cpu_count(), 'load_average_at_start': os.getloadavg()}}
    for part in a.parts:
        t0 = time.perf_counter()
        if part == 'netflix': result['netflix'] = bench_netflix(work, a.repeats)
        elif part == 'ml100k': result['ml100k'] = bench_ml100k()
        else: result['scale'] = bench_scale(work, neighbourhood=a.neighbourhood, memory_gb=a.memory_gb)
        result[part]['benchmark_wall_seconds'] = time.perf_counter() - t0
    result['machine']['load_average_at_end'] = os.getloadavg()
    if a.out: Path(a.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result))

if __name__ == '__main__':
    if len(sys.argv) > 1 and sys.argv[1] == '--worker':
        print(json.dumps(WORKERS[sys.argv[2]](*sys.argv[3:])))
    else: main()

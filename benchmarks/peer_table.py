"""The peer table: our UserCF and MF variants beside Surprise's algorithms on MovieLens 100K, Surprise's protocol.

    python benchmarks/peer_table.py [--data ../shared/data/ml-100k] [--out benchmarks/results/peer_table.json] [--only NAME ...] [--merge]

Protocol (Surprise's benchmark): `u.data` in file order, 5 folds of `KFold(n_splits=5, random_state=0)` (ours come
from `recsys_nb.splits.kfold_split`, checked fold by fold against Surprise's own `KFold`), default parameters, RMSE and
MAE averaged over the folds, seconds = fit + predict summed over the 5 folds. MF variants that early-stop carve
their validation set out of each fold's train set. Prints one JSON object (the rows) as its last line, and a
markdown table before it. The JSON file is rewritten after every row, so an interrupted run keeps the rows it
finished (`"complete": false` until the last row is in).
"""
from __future__ import annotations
import argparse, json, os, platform, sys, time
from pathlib import Path
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / 'shared' / 'data' / 'ml-100k'


def surprise_algorithms():
    from surprise import KNNBasic, KNNWithMeans, KNNBaseline, SVD, SVDpp, NMF, BaselineOnly
    quiet = dict(verbose=False)
    return {
        'Surprise KNNBasic': lambda: KNNBasic(**quiet),
        'Surprise KNNWithMeans': lambda: KNNWithMeans(**quiet),
        'Surprise KNNBaseline': lambda: KNNBaseline(**quiet),
        'Surprise SVD': lambda: SVD(random_state=0),
        'Surprise SVD++': lambda: SVDpp(random_state=0),
        'Surprise NMF': lambda: NMF(random_state=0),
        'Surprise BaselineOnly': lambda: BaselineOnly(**quiet),
    }


def our_algorithms():
    "name -> fit_predict(RatingData) -> test predictions."
    def usercf(**opts):
        def run(data):
            from recsys_nb.usercf import UserCF
            m = UserCF(**opts).fit(data)
            u, i, _ = data.triples('test')
            return m.predict_pairs(u, i)
        return run

    def mf(backend, mode, **opts):
        def run(data):
            from recsys_nb.mf import mf_config, train_mf
            cfg = mf_config(mode, progress=False, **opts)
            r = train_mf(cfg, data, backend)
            u, i, _ = data.triples('test')
            p = np.asarray(r.trainer.predict(u, i), np.float64)
            return np.clip(p, 1, 5)
        return run

    return {
        'UserCF cosine, all raters (course)': usercf(sim='cosine'),
        'UserCF msd, k=40 (≈ KNNBasic)': usercf(sim='msd', k=40),
        'UserCF msd, k=40, mean-centred (≈ KNNWithMeans)': usercf(sim='msd', k=40, center=True),
        'UserCF pearson_baseline, k=40, mean-centred': usercf(sim='pearson_baseline', k=40, center=True),
        'MF sparse JAX (defaults, early stop on 10 % of train)': mf('jax', 'sparse', val_frac=0.1),
        'MF sparse PyTorch (defaults, early stop on 10 % of train)': mf('torch', 'sparse', val_frac=0.1),
        'MF ALS JAX (defaults, early stop on 10 % of train)': mf('jax', 'als', val_frac=0.1),
        'MF dense JAX (course: k=50, λ=0.01 AdamW, lr 5e-3, tol 1e-6)': mf('jax', 'dense'),
    }


def check_folds(path, folds) -> bool:
    "Whether our folds hold exactly the test ratings of Surprise's KFold(5, random_state=0)."
    from surprise import Dataset, Reader
    from surprise.model_selection import KFold
    data = Dataset.load_from_file(str(path), Reader('ml-100k'))
    for (_, ours), (_, theirs) in zip(folds, KFold(n_splits=5, random_state=0).split(data)):
        a = set(zip(ours['user_id'].astype(str), ours['movie_id'].astype(str)))
        if a != {(u, i) for u, i, _ in theirs}: return False
    return True


def run_surprise(make, folds):
    from surprise import Dataset, Reader, accuracy
    rmses, maes, secs = [], [], 0.0
    reader = Reader(rating_scale=(1, 5))
    for train, test in folds:
        ts = Dataset.load_from_df(train[['user_id', 'movie_id', 'rating']].astype({'rating': float}), reader).build_full_trainset()
        testset = list(zip(test['user_id'], test['movie_id'], test['rating'].astype(float)))
        t0 = time.perf_counter()
        algo = make(); algo.fit(ts); pred = algo.test(testset)
        secs += time.perf_counter() - t0
        rmses.append(accuracy.rmse(pred, verbose=False)); maes.append(accuracy.mae(pred, verbose=False))
    return rmses, maes, secs


def run_ours(fn, folds):
    from recsys_nb.data import make_rating_data
    rmses, maes, secs = [], [], 0.0
    for train, test in folds:
        data = make_rating_data(train, test)
        y = data.test['rating'].to_numpy(np.float64)
        t0 = time.perf_counter()
        p = np.asarray(fn(data), np.float64)
        secs += time.perf_counter() - t0
        rmses.append(float(np.sqrt(np.mean((p - y) ** 2)))); maes.append(float(np.mean(np.abs(p - y))))
    return rmses, maes, secs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--data', default=str(DEFAULT_DATA), help='the ml-100k directory (u.data)')
    ap.add_argument('--out', default=None, help='also write the JSON here')
    ap.add_argument('--only', nargs='*', help='run only the rows whose name contains one of these strings')
    ap.add_argument('--merge', action='store_true', help="keep the other rows of the existing --out file (add or replace this run's)")
    a = ap.parse_args(argv)
    os.environ.setdefault('JAX_PLATFORMS', 'cpu')
    from recsys_nb.data import read_ratings
    from recsys_nb.splits import kfold_split
    path = Path(a.data) / 'u.data'
    df = read_ratings(path)
    folds = list(kfold_split(df, n_splits=5, seed=0))
    same = check_folds(path, folds)
    print(f'folds identical to Surprise KFold(5, random_state=0): {same}', file=sys.stderr, flush=True)
    sur = sorted(surprise_algorithms().items(), key=lambda x: x[0] == 'Surprise SVD++')   # the slow one last
    algos = [(n, 'ours', f) for n, f in our_algorithms().items()] + [(n, 'surprise', f) for n, f in sur]
    if a.only: algos = [x for x in algos if any(s in x[0] for s in a.only)]
    rows, kept, commands = [], [], []
    if a.merge and a.out and Path(a.out).exists():
        old = json.loads(Path(a.out).read_text())
        names = {x[0] for x in algos}
        kept = [r for r in old['rows'] if r['algorithm'] not in names]
        commands = [old['command']] if isinstance(old['command'], str) else list(old['command'])
    def result(complete):
        return {'dataset': 'MovieLens 100K (u.data, 100,000 ratings)', 'protocol': 'KFold(n_splits=5, random_state=0), mean over folds',
                'folds_identical_to_surprise': same, 'command': (commands + [this_command]) if commands else this_command,
                'machine': f'{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}',
                'complete': complete, 'rows': kept + rows}
    this_command = 'python benchmarks/peer_table.py ' + ' '.join(
        f"'{x}'" if ' ' in x else x for x in (sys.argv[1:] if argv is None else argv))
    if a.out: Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    for name, kind, f in algos:
        print(f'[peer] {name} ...', file=sys.stderr, flush=True)
        r, m, s = (run_surprise if kind == 'surprise' else run_ours)(f, folds)
        rows.append({'algorithm': name, 'rmse': float(np.mean(r)), 'rmse_std': float(np.std(r)), 'mae': float(np.mean(m)),
                     'seconds': round(s, 1), 'rmse_folds': [round(x, 5) for x in r]})
        print(f'[peer] {name}: RMSE {rows[-1]["rmse"]:.4f}  MAE {rows[-1]["mae"]:.4f}  {s:.1f} s', file=sys.stderr, flush=True)
        if a.out: Path(a.out).write_text(json.dumps(result(False), indent=1, ensure_ascii=False))
    out = result(True)
    print('| algorithm | RMSE | MAE | seconds (5 folds) |\n|---|---|---|---|')
    for r in sorted(out['rows'], key=lambda r: r['rmse']):
        print(f"| {r['algorithm']} | {r['rmse']:.4f} ± {r['rmse_std']:.4f} | {r['mae']:.4f} | {r['seconds']:.1f} |")
    if a.out: Path(a.out).write_text(json.dumps(out, indent=1, ensure_ascii=False))
    print(json.dumps(out, ensure_ascii=False))


if __name__ == '__main__':
    main()

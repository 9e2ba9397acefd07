"""MovieLens-100K, Surprise's protocol (5 folds, KFold(n_splits=5, random_state=0)): matrix factorisation against
Surprise's SVD, both tuned the same way on validation splits carved from each training fold (never the test fold).

    python benchmarks/mf_bench.py [--data ../shared/data/ml-100k] [--quick]

Prints progress to stderr and one JSON object (the figures) as the last line of stdout.
"""
from __future__ import annotations
import argparse, itertools, json, sys, time
from pathlib import Path
import numpy as np

from recsys_nb.data import load_movielens, make_rating_data
from recsys_nb.splits import kfold_split, validation_split
from recsys_nb.mf import MFData, mf_config
from recsys_nb.mf_jax import train_and_evaluate


def log(*a): print(*a, file=sys.stderr, flush=True)


def surprise_folds_match(ratings) -> bool:
    "Whether `kfold_split` gives the same test folds as Surprise's KFold(n_splits=5, random_state=0)."
    from surprise import Dataset, Reader
    from surprise.model_selection import KFold
    ds = Dataset.load_from_df(ratings[['user_id', 'movie_id', 'rating']], Reader(rating_scale=(1, 5)))
    ours = [set(zip(te.user_id, te.movie_id)) for _, te in kfold_split(ratings, 5, 0)]
    theirs = [{(int(u), int(i)) for u, i, _ in test} for _, test in KFold(n_splits=5, random_state=0).split(ds)]
    return ours == theirs


def surprise_fit(train_df, test_df, **params) -> tuple[float, float]:
    "(test RMSE, seconds) of Surprise's SVD with `params` trained on `train_df`."
    from surprise import Dataset, Reader, SVD, accuracy
    ts = Dataset.load_from_df(train_df[['user_id', 'movie_id', 'rating']], Reader(rating_scale=(1, 5))).build_full_trainset()
    t0 = time.perf_counter()
    algo = SVD(random_state=0, **params).fit(ts)
    seconds = time.perf_counter() - t0
    pred = algo.test(list(zip(test_df.user_id, test_df.movie_id, test_df.rating.astype(float))))
    return accuracy.rmse(pred, verbose=False), seconds


def ours_fit(data: MFData, **options) -> tuple[float, float]:
    "(test RMSE, seconds) of our model on `data` (its test part may be a validation set)."
    run = train_and_evaluate(mf_config(**{'progress': False, **options}), data)
    return run.test_rmse, run.info['seconds']


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--data', default=str(Path(__file__).resolve().parents[2] / 'shared/data/ml-100k'))
    p.add_argument('--quick', action='store_true', help='two folds and small grids (a smoke test)')
    args = p.parse_args(argv)
    ratings, _ = load_movielens(args.data)
    folds = list(kfold_split(ratings, 5, 0))
    if args.quick: folds = folds[:2]
    ours_grid = [dict(mode='bayes', k=k) for k in ((5, 10) if args.quick else (5, 10, 20))]
    svd_grid = [dict(n_factors=f, n_epochs=e, lr_all=0.005, reg_all=r)
                for f, e, r in itertools.product((50, 200), (50, 200), (0.05, 0.1))] + \
               [dict(n_factors=200, n_epochs=200, lr_all=0.003, reg_all=0.1)]     # the hand-tuned setting
    if args.quick: svd_grid = svd_grid[:2]
    out = dict(dataset=str(args.data), ratings=len(ratings), folds=len(folds), protocol='KFold(n_splits=5, random_state=0); '
               'hyper-parameters chosen per fold on a 10% validation split of its training part',
               folds_match_surprise=surprise_folds_match(ratings), ours_grid=ours_grid, svd_grid=svd_grid, per_fold=[])
    log('folds identical to Surprise KFold(random_state=0):', out['folds_match_surprise'])
    for f, (tr, te) in enumerate(folds):
        data = make_rating_data(tr, te)
        v = validation_split(data, 0.1, seed=f)                    # carved from the training fold only
        vdata = MFData(data.n_users, data.n_movies, v.triples('train'), v.triples('test'))   # "test" = validation
        row = dict(fold=f)
        # --- ours: search on validation, then train on the whole training fold
        t0 = time.perf_counter()
        scores = [ours_fit(vdata, **g)[0] for g in ours_grid]
        row['ours_search_seconds'] = time.perf_counter() - t0
        best = ours_grid[int(np.argmin(scores))]
        row['ours_val'] = dict(zip([str(g) for g in ours_grid], scores))
        row['ours_choice'] = best
        row['ours_test_rmse'], row['ours_train_seconds'] = ours_fit(MFData.from_rating_data(data), **best)
        # --- Surprise's SVD: the same protocol
        t0 = time.perf_counter()
        scores = [surprise_fit(v.train, v.test, **g)[0] for g in svd_grid]
        row['svd_search_seconds'] = time.perf_counter() - t0
        best = svd_grid[int(np.argmin(scores))]
        row['svd_val'] = dict(zip([str(g) for g in svd_grid], scores))
        row['svd_choice'] = best
        row['svd_test_rmse'], row['svd_train_seconds'] = surprise_fit(tr, te, **best)
        # --- untuned references: Surprise's SVD defaults, our sparse and ALS defaults
        row['svd_default_test_rmse'], row['svd_default_seconds'] = surprise_fit(tr, te)
        mf = MFData.from_rating_data(data)
        row['sparse_default_test_rmse'], row['sparse_default_seconds'] = ours_fit(mf, mode='sparse')
        row['als_default_test_rmse'], row['als_default_seconds'] = ours_fit(mf, mode='als')
        out['per_fold'].append(row)
        log(f"fold {f}: ours {row['ours_test_rmse']:.4f} ({row['ours_choice']}, {row['ours_train_seconds']:.1f}s) | "
            f"SVD tuned {row['svd_test_rmse']:.4f} ({row['svd_choice']}, {row['svd_train_seconds']:.1f}s) | "
            f"SVD default {row['svd_default_test_rmse']:.4f} | sparse default {row['sparse_default_test_rmse']:.4f} | "
            f"ALS default {row['als_default_test_rmse']:.4f}")
    pf = out['per_fold']
    mean = lambda k: float(np.mean([r[k] for r in pf]))
    total = lambda k: float(np.sum([r[k] for r in pf]))
    out['summary'] = {
        'ours_mean_test_rmse': mean('ours_test_rmse'), 'svd_tuned_mean_test_rmse': mean('svd_test_rmse'),
        'svd_default_mean_test_rmse': mean('svd_default_test_rmse'),
        'sparse_default_mean_test_rmse': mean('sparse_default_test_rmse'), 'als_default_mean_test_rmse': mean('als_default_test_rmse'),
        'ours_train_seconds_all_folds': total('ours_train_seconds'), 'svd_tuned_train_seconds_all_folds': total('svd_train_seconds'),
        'svd_default_seconds_all_folds': total('svd_default_seconds'),
        'sparse_default_seconds_all_folds': total('sparse_default_seconds'), 'als_default_seconds_all_folds': total('als_default_seconds'),
        'ours_search_seconds': total('ours_search_seconds'), 'svd_search_seconds': total('svd_search_seconds'),
    }
    s = out['summary']
    s['ours_beats_svd_tuned'] = s['ours_mean_test_rmse'] < s['svd_tuned_mean_test_rmse']
    s['ours_faster_than_svd_tuned'] = s['ours_train_seconds_all_folds'] < s['svd_tuned_train_seconds_all_folds']
    s['sparse_default_beats_svd_default'] = s['sparse_default_mean_test_rmse'] < s['svd_default_mean_test_rmse']
    log(json.dumps(s, indent=1))
    print(json.dumps(out))


if __name__ == '__main__':
    main()

"""Sparse minibatch matrix factorisation at the full Netflix Prize's shape on CPU: 480,189 users x 17,770 movies,
100,480,507 ratings, generated in memory (planted biases + rank-8 structure + noise, like recsys_nb.data's
synthetic datasets), a few epochs; seconds per epoch and peak resident memory.

    python benchmarks/mf_scale.py [--backend jax|torch|both] [--epochs 3] [--batch-size 1048576]

`both` runs each backend in its own process (so that each peak RSS is its own). Progress goes to stderr and one
JSON object is the last line of stdout.
"""
from __future__ import annotations
import argparse, json, resource, subprocess, sys, time
import numpy as np

N_USERS, N_MOVIES, N_RATINGS = 480_189, 17_770, 100_480_507


def log(*a): print(*a, file=sys.stderr, flush=True)
def peak_rss_gb() -> float: return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def synth_triples(n_users=N_USERS, n_movies=N_MOVIES, n_ratings=N_RATINGS, rank=8, noise=0.9, seed=0, chunk=5_000_000):
    "Distinct (user, movie) pairs sorted by user then movie, with ratings 1..5 from a planted model; O(ratings) memory."
    rng = np.random.default_rng(seed)
    activity = rng.lognormal(0.0, 1.0, n_users)
    pop = np.exp(-0.9 * np.log(rng.permutation(n_movies) + 10.0)); pop /= pop.sum()
    cdf = np.cumsum(pop)
    keys = np.empty(0, np.int64)
    need = n_ratings
    while need > 0:                              # draw, drop repeated pairs, top up the deficit
        m = int(need * 1.03) + 1000
        counts = rng.multinomial(m, activity / activity.sum())
        u = np.repeat(np.arange(n_users, dtype=np.int64), counts)
        i = np.searchsorted(cdf, rng.random(m)).clip(0, n_movies - 1)
        keys = np.concatenate([keys, u * n_movies + i]); del u, i
        keys.sort()
        keys = keys[np.r_[True, keys[1:] != keys[:-1]]]
        need = n_ratings - len(keys)
    if len(keys) > n_ratings:                    # drop a random surplus
        drop = rng.choice(len(keys), len(keys) - n_ratings, replace=False)
        keep = np.ones(len(keys), bool); keep[drop] = False; keys = keys[keep]
    u, i = (keys // n_movies).astype(np.int32), (keys % n_movies).astype(np.int32); del keys
    b_u, b_i = rng.normal(0, 0.35, n_users), rng.normal(0, 0.45, n_movies)
    P, Q = (rng.normal(0, 0.75 / rank ** 0.25, (n, rank)).astype(np.float32) for n in (n_users, n_movies))
    r = np.empty(len(u), np.float32)
    for s in range(0, len(u), chunk):
        uu, ii = u[s:s + chunk], i[s:s + chunk]
        score = 3.55 + b_u[uu] + b_i[ii] + np.einsum('nk,nk->n', P[uu], Q[ii]) + rng.normal(0, noise, len(uu))
        r[s:s + chunk] = np.clip(np.rint(score), 1, 5)
    return u, i, r


def run(backend:str, epochs:int, batch_size:int, k:int, lr:float) -> dict:
    from recsys_nb.mf import MFData, mf_config
    from recsys_nb.mf_jax import train_and_evaluate as jax_train
    from recsys_nb.mf_torch import train_and_evaluate as torch_train
    t0 = time.time()
    u, i, r = synth_triples()
    gen_s = time.time() - t0
    test = np.random.default_rng(1).random(len(u)) < 0.01       # 1% held out (keeps the user-sorted order)
    data = MFData(N_USERS, N_MOVIES, (u[~test], i[~test], r[~test]), (u[test], i[test], r[test]))
    del u, i, r, test
    log(f'{data} generated in {gen_s:.0f}s; peak RSS so far {peak_rss_gb():.2f} GB')
    cfg = mf_config('sparse', k=k, batch_size=batch_size, lr=lr, max_epochs=epochs, tol=0, progress=True)
    t0 = time.time()
    run = (jax_train if backend == 'jax' else torch_train)(cfg, data)
    total = time.time() - t0
    h = run.history
    return dict(backend=backend, users=N_USERS, movies=N_MOVIES, ratings=data.n_train + len(data.test[0]),
                train_ratings=data.n_train, test_ratings=len(data.test[0]), k=k, batch_size=batch_size, lr=lr,
                epochs=len(h), generate_seconds=round(gen_s, 1), setup_and_train_seconds=round(total, 1),
                seconds_per_epoch=round(run.info['seconds_per_epoch'], 2),
                train_rmse_per_epoch=[round(x, 4) for x in h['train_rmse']],
                test_rmse_per_epoch=[round(x, 4) for x in h['test_rmse']],
                peak_rss_gb=round(peak_rss_gb(), 2))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--backend', choices=['jax', 'torch', 'both'], default='both')
    p.add_argument('--epochs', type=int, default=3)
    p.add_argument('--batch-size', type=int, default=1 << 20)
    p.add_argument('--k', type=int, default=50)
    p.add_argument('--lr', type=float, default=0.005)
    args = p.parse_args(argv)
    if args.backend != 'both':
        out = run(args.backend, args.epochs, args.batch_size, args.k, args.lr)
        log(json.dumps(out, indent=1)); print(json.dumps(out)); return
    results = {}
    for b in ('jax', 'torch'):
        cmd = [sys.executable, __file__, '--backend', b, '--epochs', str(args.epochs), '--batch-size', str(args.batch_size),
               '--k', str(args.k), '--lr', str(args.lr)]
        res = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        results[b] = json.loads(res.stdout.strip().splitlines()[-1]) if res.returncode == 0 else {'error': res.returncode}
    print(json.dumps(results))


if __name__ == '__main__':
    main()

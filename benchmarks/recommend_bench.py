"""`recommend` for every MovieLens-100K user (u1.base), n = 10, seen items left out: UserCF and MF side by side.

    python benchmarks/recommend_bench.py [--repeats N] [--out benchmarks/results/recommend.json]

Fitting is outside the clock, and so is one warm-up call of each (Numba's compiled pair sums load once per
process). The two models are timed in alternation; the minimum and the median of the repeats are reported.
Prints one JSON object and writes it to --out.
"""
import argparse, json, os, statistics, sys, time
from pathlib import Path

from recsys_nb import MF, UserCF
from recsys_nb.data import read_ratings
from recsys_nb.splits import movielens_u_split

ROOT = Path(__file__).resolve().parents[1]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--data', default=str(ROOT.parent / 'shared' / 'data' / 'ml-100k'), help='a MovieLens 100K directory')
    p.add_argument('--repeats', type=int, default=7)
    p.add_argument('--out', default=str(ROOT / 'benchmarks' / 'results' / 'recommend.json'))
    a = p.parse_args()
    u_data = Path(a.data) / 'u.data'
    if not u_data.is_file(): sys.exit(f'recommend_bench: {u_data}: not found (a MovieLens 100K directory is needed)')
    base, _ = movielens_u_split(read_ratings(u_data), 1)
    base = base.rename(columns={'user_id': 'user', 'movie_id': 'item'})[['user', 'item', 'rating']]
    users = base.user.unique()
    models = {'UserCF(sim=msd, k=40)': UserCF(sim='msd', k=40).fit(base),
              'MF(sparse)': MF(mode='sparse', progress=False).fit(base),
              'MF(bayes)': MF(mode='bayes', progress=False).fit(base)}
    times = {name: [] for name in models}
    for m in models.values(): m.recommend(users, n=10)            # warm-up
    for _ in range(a.repeats):
        for name, m in models.items():
            t0 = time.perf_counter(); rec = m.recommend(users, n=10); times[name].append(time.perf_counter() - t0)
            assert len(rec) == 10 * len(users)
    out = {'users': int(len(users)), 'items': int(base.item.nunique()), 'n': 10, 'exclude_seen': True, 'repeats': a.repeats,
           'cpu_count': os.cpu_count(),
           'seconds': {name: {'min': round(min(t), 4), 'median': round(statistics.median(t), 4)} for name, t in times.items()}}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1) + '\n')
    print(json.dumps(out))


if __name__ == '__main__': main()

"""Time the vectorised ranking metrics against a per-query Python loop at Spotify-challenge scale.

Usage: python benchmarks/metrics_bench.py [--queries 2000] [--k 500] [--items 100000] [--max-relevant 100]
Prints one JSON object. The defaults are a Spotify-challenge-like case (500 recommendations, up to ~100 withheld
tracks); `--queries 50000 --k 100 --max-relevant 1` is a retrieval-like case (one true candidate per query)."""
import argparse, json, time
import numpy as np
from recsys_nb.metrics import hit_matrix, ranking_metrics


def naive_hits(ranked, relevant):
    out = np.zeros(ranked.shape, bool)
    for i, (row, rel) in enumerate(zip(ranked, relevant)):
        out[i] = np.isin(row, rel)
    return out


def best_of(f, repeat=3):
    times = []
    for _ in range(repeat):
        t = time.perf_counter(); f(); times.append(time.perf_counter() - t)
    return min(times)


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--queries', type=int, default=2000)
    p.add_argument('--k', type=int, default=500)
    p.add_argument('--items', type=int, default=100_000)
    p.add_argument('--max-relevant', type=int, default=100)
    a = p.parse_args()
    rng = np.random.default_rng(0)
    ranked = np.stack([rng.choice(a.items, a.k, replace=False) for _ in range(a.queries)])
    m = a.max_relevant
    relevant = [np.r_[rng.choice(row, rng.integers(0, m // 5 + 1)), rng.integers(0, a.items, rng.integers(1, m - m // 5 + 1))]
                for row in ranked]
    assert (hit_matrix(ranked, relevant) == naive_hits(ranked, relevant)).all()
    res = dict(queries=a.queries, k=a.k, items=a.items, max_relevant=m,
               hit_matrix_vectorised_s=best_of(lambda: hit_matrix(ranked, relevant)),
               hit_matrix_loop_s=best_of(lambda: naive_hits(ranked, relevant)),
               ranking_metrics_s=best_of(lambda: ranking_metrics(ranked, relevant, k=a.k)))
    res['speedup'] = res['hit_matrix_loop_s'] / res['hit_matrix_vectorised_s']
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in res.items()}))


if __name__ == '__main__':
    main()

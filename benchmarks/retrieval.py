"""Two-tower retrieval on MovieLens 100K: wall-clock and CPU seconds and factorized top-k accuracy of named configurations.

Usage: python benchmarks/retrieval.py [CONFIG ...] [--data DIR]
CONFIG is one of: tutorial-32, tutorial-64-32, tutorial-128-64-32 (TFRS's protocol: Adagrad 0.1, 300 epochs, plain
in-batch softmax) and best (Adam 0.003, logQ correction, [64, 32], 13 epochs: the recipe the notebook chooses on a
validation set). Default: best. Prints one JSON object per configuration.
"""
import argparse, json, os, sys, time
from dataclasses import replace
from pathlib import Path

from recsys_nb.retrieval import RetrievalConfig, load_retrieval_data, popularity_baseline, train_retrieval

TUTORIAL = RetrievalConfig()
CONFIGS = {'tutorial-32': replace(TUTORIAL, layer_sizes=(32,)),
           'tutorial-64-32': replace(TUTORIAL, layer_sizes=(64, 32)),
           'tutorial-128-64-32': replace(TUTORIAL, layer_sizes=(128, 64, 32)),
           'best': RetrievalConfig(layer_sizes=(64, 32), optimizer='adam', learning_rate=0.003, logq=True, epochs=13,
                                   eval_every=13)}

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('configs', nargs='*', default=['best'], choices=list(CONFIGS) + ['popularity'])
    p.add_argument('--data', default=str(Path(__file__).resolve().parents[2]/'shared'/'data'/'ml-100k'))
    args = p.parse_args()
    data = load_retrieval_data(args.data, seed=42)
    for name in args.configs:
        if name == 'popularity':
            print(json.dumps({'config': name, **popularity_baseline(data)}), flush=True); continue
        t0 = time.perf_counter()
        res = train_retrieval(CONFIGS[name], data, progress=False)
        print(json.dumps({'config': name, **{k: round(v, 4) for k, v in res.metrics.items()},
                          'seconds': round(time.perf_counter() - t0, 1), 'cpu_seconds': round(res.info['cpu_seconds'], 1),
                          'load_average': os.getloadavg()[0], 'cores': os.cpu_count()}), flush=True)

if __name__ == '__main__': main()

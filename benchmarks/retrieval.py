"""Two-tower retrieval on MovieLens 100K: wall-clock and CPU seconds and factorized top-k accuracy of named configurations.

Usage: python benchmarks/retrieval.py [CONFIG ...] [--data DIR] [--out FILE]
CONFIG is one of:
  table-32, table-64-32, table-128-64-32  TFRS's deep-retrieval recipe (Adagrad 0.1, batches of 2,048, plain in-batch
                                          softmax, evaluation every 5 epochs) for 150 epochs: the notebook's table
  tutorial-32, tutorial-64-32, tutorial-128-64-32  the same for TFRS's full 300 epochs
  best        Adam 0.003, logQ correction, [64, 32], 13 epochs: the recipe the notebook chooses on a validation set
  popularity  the 100 most-rated movies for everybody
Default: the three table configurations, popularity and best, one after another in this process. Prints one JSON
object per configuration; --out also writes them all, with each run's history (loss per epoch, accuracies every
evaluation), to FILE.
"""
import argparse, json, os, sys, time
from dataclasses import replace, asdict
from pathlib import Path

from recsys_nb.retrieval import RETRIEVAL_RECIPES, RetrievalConfig, load_retrieval_data, popularity_baseline, train_retrieval

TUTORIAL = RETRIEVAL_RECIPES['tfrs']    # TFRS's tutorial, 300 epochs
TABLE_EPOCHS = 150
DEPTHS = {'32': (32,), '64-32': (64, 32), '128-64-32': (128, 64, 32)}
CONFIGS = {**{f'table-{k}': replace(TUTORIAL, layer_sizes=v, epochs=TABLE_EPOCHS) for k, v in DEPTHS.items()},
           **{f'tutorial-{k}': replace(TUTORIAL, layer_sizes=v) for k, v in DEPTHS.items()},
           'best': RetrievalConfig(eval_every=13)}          # the defaults: the chapter's validated recipe
DEFAULT = ['table-32', 'table-64-32', 'table-128-64-32', 'popularity', 'best']

def _plain(row:dict) -> dict:
    return {k: (v if isinstance(v, (str, type(None))) else float(v)) for k, v in row.items()}

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('configs', nargs='*', metavar='CONFIG', help=f'{", ".join(list(CONFIGS) + ["popularity"])} '
                                                                f'(default: {" ".join(DEFAULT)})')
    p.add_argument('--data', default=str(Path(__file__).resolve().parents[2]/'shared'/'data'/'ml-100k'))
    p.add_argument('--out', help='also write every result, with histories, to this JSON file')
    args = p.parse_args()
    args.configs = args.configs or DEFAULT
    unknown = [c for c in args.configs if c not in CONFIGS and c != 'popularity']
    if unknown: p.error(f'unknown configuration(s) {unknown}; choose from {list(CONFIGS) + ["popularity"]}')
    data = load_retrieval_data(args.data, seed=42)
    out = {'machine': {'cores': os.cpu_count(), 'load_average_at_start': os.getloadavg()}, 'runs': []}
    for name in args.configs:
        if name == 'popularity':
            row = {'config': name, **popularity_baseline(data)}
            print(json.dumps(row), flush=True); out['runs'].append(row); continue
        t0 = time.perf_counter()
        res = train_retrieval(CONFIGS[name], data, progress=False)
        row = {'config': name, **{k: round(v, 4) for k, v in res.metrics.items()},
               'seconds': round(time.perf_counter() - t0, 1), 'cpu_seconds': round(res.info['cpu_seconds'], 1),
               'load_average': os.getloadavg()[0], 'cores': os.cpu_count()}
        print(json.dumps(row), flush=True)
        out['runs'].append({**row, 'settings': asdict(CONFIGS[name]), 'history': [_plain(r) for r in res.history.rows]})
    out['machine']['load_average_at_end'] = os.getloadavg()
    if args.out: Path(args.out).write_text(json.dumps(out, indent=1))

if __name__ == '__main__': main()

"""Shop the Look benchmark: train the two towers on the default synthetic set (64 x 64, CPU) and evaluate; prints JSON.

    flock /tmp/recsys_bench.lock python benchmarks/stl_bench.py [--name NAME] [--set KEY=VALUE ...]

Every run uses the `cpu` config with the `--set` changes, the same data (`synth_stl(..., 'default', seed=0)`) and the
same seed. Training seconds are the wall clock of `train_stl` (data loading, compilation, steps and the periodic
evaluations); `train_cpu_seconds` is the CPU time (user + system, all threads) of the same span. With `--name` the
figures are also written to benchmarks/results/stl_NAME.json.
"""
import argparse, ast, json, resource, sys, time
from dataclasses import asdict
from pathlib import Path


def cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def parse_set(items):
    out = {}
    for it in items:
        k, _, v = it.partition('=')
        try: out[k] = ast.literal_eval(v)
        except (ValueError, SyntaxError): out[k] = v
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--name', help='write benchmarks/results/stl_NAME.json')
    p.add_argument('--set', nargs='*', default=[], metavar='KEY=VALUE', help='STLConfig changes, e.g. steps=600 in_batch=True')
    p.add_argument('--data', help='data directory (default: the cached default synthetic set)')
    a = p.parse_args()
    from recsys_nb.synth import cache_dir
    from recsys_nb.stl import train_stl
    from recsys_nb.stl_data import load_stl
    from recsys_nb.stl_eval import make_embeddings, evaluate_stl
    from recsys_nb.stl_model import STL_CONFIGS
    from recsys_nb.stl_synth import synth_stl
    data_dir = Path(a.data) if a.data else cache_dir() / 'stl-default'
    if not (data_dir / 'synth.json').exists(): synth_stl(data_dir, 'default', seed=0)
    cfg = STL_CONFIGS['cpu'].replace(**parse_set(a.set))
    data = load_stl(data_dir)
    t0, c0 = time.time(), cpu_seconds()
    run = train_stl(data, cfg, workdir=None, progress=False)
    t1, c1 = time.time(), cpu_seconds()
    res = evaluate_stl(make_embeddings(run.model, data, cfg, cache=run.cache), data, run.test_triplets, margin=cfg.margin, seed=cfg.seed)
    evals = run.history.df.dropna(subset=['test_auc'])[['step', 'test_auc']]
    out = {'name': a.name, 'changes': parse_set(a.set), 'train_seconds': round(t1 - t0, 1), 'train_cpu_seconds': round(c1 - c0, 1),
           'steps': int(run.history.last['step']), 'test_auc': round(res['test_auc'], 4), 'hr_at_10': round(res['hr_at_10'], 4),
           'random_hr_at_10': round(res['random_hr_at_10'], 4), 'hr_ratio': round(res['hr_at_10'] / res['expected_random_hr_at_10'], 2),
           'recall_at_50': round(res['recall_at_50'], 4), 'coverage_at_10': round(res['coverage_at_10'], 3),
           'gini_at_10': round(res['gini_at_10'], 3), 'final_loss': round(float(run.history.last['loss']), 4),
           'auc_curve': {int(s): round(float(v), 4) for s, v in evals.itertuples(index=False)}, 'config': asdict(cfg),
           'results': res}
    if a.name:
        path = Path(__file__).parent / 'results' / f'stl_{a.name}.json'
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(out, indent=1, default=str))
    print(json.dumps({k: v for k, v in out.items() if k not in ('config', 'results')}, default=str))


if __name__ == '__main__': main()

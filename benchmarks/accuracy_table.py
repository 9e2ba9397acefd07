"""The accuracy table on MovieLens 100K's canonical split u1.base/u1.test: MF's modes (sparse, bayes, Bayesian SVD++
plain and flipped, Bayesian timeSVD++ flipped) and the course's variations of MF (mode neural: sigmoid output,
count-scaled λ, MLP head), beside published anchors.

    python benchmarks/accuracy_table.py                 # every model: u1 RMSE, MAE, seconds, seed; writes results/accuracy.json
    python benchmarks/accuracy_table.py --only svdpp_flipped neural_sigmoid   # some rows (the others kept from the JSON)
    python benchmarks/accuracy_table.py --validate [svdpp|time|nmf]   # the validation grids on u1.base (90/10, seed 0) that chose the settings
    python benchmarks/accuracy_table.py --folds svdpp_flipped   # every row, and the 5-fold mean over u1…u5 for these

Every row runs exactly what `recsys-nb mf --train u1.base --test u1.test --mode MODE [...] --json` runs (the command
is in each row), on the files `recsys-nb data u-splits u.data --out DIR` writes. Hyper-parameters come from the
validation part of u1.base only, never from u1.test. Timings are one process on this machine's shared CPU cores,
Numba compilation excluded (reported on its own line).
"""
import argparse, json, platform, sys, tempfile, time
from pathlib import Path
import numpy as np, pandas as pd
import torch
torch.set_num_threads(1)
from recsys_nb import MF
from recsys_nb.data import load_ratings, read_ratings
from recsys_nb.mf import evaluate_mf
from recsys_nb.splits import movielens_u_split, random_split, write_movielens_u_splits

DATA = Path(__file__).resolve().parents[2] / 'shared/data/ml-100k'
OUT = Path(__file__).resolve().parent / 'results'
ANCHORS = [('GLocal-K (Han et al. 2021), ratings only', 0.8889), ('IGMC (Zhang & Chen 2020)', 0.905),
           ('GC-MC (van den Berg et al. 2017)', 0.910)]
# MF modes at their defaults (MODE_DEFAULTS, chosen on validation), and the course's variations as options of mode
# 'neural' (λ = m·50^(1-γ), m in 0.03…2; epochs = the best validation epoch of that setting; see --validate nmf):
# name -> (description, mode, command-line options, the same as MF keywords)
MODE_ROWS = {
    'timesvdpp_flipped': ('MF timesvdpp_flipped: Bayesian timeSVD++ flipped (user-day, item-bin, drift), k=16, 350 sweeps', 'timesvdpp_flipped', ['--implicit-test'], dict(implicit_test=True)),
    'svdpp_flipped': ('MF svdpp_flipped: Bayesian SVD++ flipped, k=16, 350 sweeps', 'svdpp_flipped', ['--implicit-test'], dict(implicit_test=True)),
    'svdpp':         ('MF svdpp: Bayesian SVD++, k=16, 350 sweeps', 'svdpp', ['--implicit-test'], dict(implicit_test=True)),
    'mf_bayes':      ('MF bayes: BPMF by Gibbs, k=10', 'bayes', [], {}),
    'mf_sparse':     ('MF sparse: biased MF, Adam', 'sparse', [], {}),
    'neural':        ('MF neural: λ·n^½ (γ=½), linear output, k=32', 'neural', [], {}),
    'neural_l2':     ('MF neural: per-rating L2 (γ=1), linear output', 'neural', ['--gamma', '1', '--lmd', '0.3', '--max-epochs', 'E'], dict(gamma=1.0, lmd=0.3)),
    'neural_gamma0': ('MF neural: one λ for all (γ=0), linear output', 'neural', ['--gamma', '0', '--lmd', '30', '--max-epochs', 'E'], dict(gamma=0.0, lmd=30.0)),
    'neural_sigmoid': ('MF neural: γ=½, sigmoid output', 'neural', ['--output', 'sigmoid', '--max-epochs', 'E'], dict(output='sigmoid')),
    'neural_mlp':    ('MF neural: γ=½, + MLP head (NeuMF-style)', 'neural', ['--head', 'mlp', '--max-epochs', 'E'], dict(head='mlp')),
}
EPOCHS = {'neural_l2': 58, 'neural_gamma0': 56, 'neural_sigmoid': 191, 'neural_mlp': 28}   # best validation epochs (--validate nmf)
ROWS = list(MODE_ROWS)
SPLITS = Path(tempfile.mkdtemp(prefix='u-splits-'))

def split_files(fold):
    "u{fold}.base, u{fold}.test as the dataset's files (written once)."
    base, test = SPLITS / f'u{fold}.base', SPLITS / f'u{fold}.test'
    if not base.exists(): write_movielens_u_splits(DATA / 'u.data', SPLITS, [fold])
    return base, test

def options(name) -> tuple[list, dict]:
    "(command-line options, the same as MF keywords) of a row, with its epochs."
    _, _, args, kw = MODE_ROWS[name]
    return [str(EPOCHS[name]) if a == 'E' else a for a in args], {**kw, **({'max_epochs': EPOCHS[name]} if name in EPOCHS else {})}

def command(name, fold=1) -> str:
    return ' '.join(['recsys-nb mf --train', f'u{fold}.base', '--test', f'u{fold}.test', '--mode', MODE_ROWS[name][1], *options(name)[0], '--json'])

def warm_numba() -> float:
    "Compile the Gibbs kernels on a tiny set (cached by Numba afterwards); the seconds it took."
    t0, g = time.perf_counter(), np.random.default_rng(0)
    tiny = pd.DataFrame({'user': g.integers(0, 9, 60), 'item': g.integers(0, 7, 60), 'rating': g.integers(1, 6, 60)}).drop_duplicates(['user', 'item'])
    tiny['date'] = pd.Timestamp('2000-01-01') + pd.to_timedelta(g.integers(0, 9, len(tiny)), 'D')
    for mode in ('svdpp', 'svdpp_flipped', 'timesvdpp_flipped'):
        MF(mode, k=2, max_epochs=2, burn_in=0, progress=False).fit(tiny, implicit_pairs=tiny[['user', 'item']])
    return time.perf_counter() - t0

def measure(name, fold=1) -> dict:
    "One row: what `command(name, fold)` prints, run in this process."
    base, test = split_files(fold)
    desc, mode, _, _ = MODE_ROWS[name]
    kw = options(name)[1]
    data = load_ratings(base, test)                    # what the command reads
    t0 = time.perf_counter()
    out = evaluate_mf(data, 'torch', mode, progress=False, **kw)
    secs = time.perf_counter() - t0
    return dict(model=name, description=desc, fold=fold, rmse=round(out['test_rmse'], 4), seconds=round(secs, 1),
                seed=out['config']['seed'], uses_test_pairs=bool(kw.get('implicit_test')), command=command(name, fold))

def validate(grids=('svdpp', 'time', 'nmf')) -> dict:
    "The grids, on u1.base split 90/10 (seed 0); the validation and u1.test pairs are the implicit pairs."
    base, test = movielens_u_split(read_ratings(DATA / 'u.data'), 1)
    tr, va = random_split(base, 0.1, 0)
    pairs = pd.concat([va[['user_id', 'movie_id']], test[['user_id', 'movie_id']]])
    out = {'svdpp': [], 'time': [], 'nmf': []}
    def gibbs(grid, mode, **kw):
        m = MF(mode, max_epochs=400, burn_in=30, progress=False, **kw).fit(tr, implicit_pairs=pairs, eval_ratings=va)
        h = m.run_.history['test_rmse']                 # the evaluation set here is the validation part
        out[grid].append(dict(mode=mode, **kw, val_rmse_by_sweep={int(e) + 1: round(float(v), 4) for e, v in h.iloc[49::25].items()}))
        print(out[grid][-1], file=sys.stderr, flush=True)
    if 'svdpp' in grids: gibbs('svdpp', 'svdpp_flipped', k=16)          # k=32 costs about four times as much per sweep
    for terms in (('day', 'day,bin', 'day,bin,drift') if 'time' in grids else ()):
        gibbs('time', 'timesvdpp_flipped', k=16, time_terms=terms)
    if 'nmf' not in grids: return out
    def neural(**kw):
        m = MF('neural', max_epochs=200, progress=False, **kw).fit(tr, eval_ratings=va)
        h = m.run_.history['test_rmse'].to_numpy(); b = int(np.argmin(h))      # the evaluation set here is the validation part
        out['nmf'].append(dict(**kw, val_rmse=round(float(h[b]), 4), best_epoch=b + 1)); print(out['nmf'][-1], file=sys.stderr, flush=True)
    for gamma in (1.0, 0.5, 0.0):
        for m in (0.03, 0.1, 0.3, 0.6, 2.0): neural(gamma=gamma, lmd=m * 50 ** (1 - gamma))
    best = min((r for r in out['nmf']), key=lambda r: r['val_rmse'])
    kw = {k: best[k] for k in ('gamma', 'lmd')}
    neural(**kw, output='sigmoid'); neural(**kw, head='mlp')
    return out

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--only', nargs='+', choices=ROWS, help='measure these rows only (the others are kept from the JSON)')
    ap.add_argument('--folds', nargs='*', choices=ROWS, default=[], help='also the 5-fold mean over u1…u5 for these rows')
    ap.add_argument('--validate', nargs='*', choices=['svdpp', 'time', 'nmf'], help='run these validation grids (default all) and write results/accuracy_validation.json')
    a = ap.parse_args()
    if not (DATA / 'u.data').exists(): sys.exit(f'accuracy_table: {DATA / "u.data"} not found (MovieLens 100K)')
    OUT.mkdir(parents=True, exist_ok=True)
    if a.validate is not None:                           # the grids run now replace theirs in the file, the others are kept
        vpath, grids = OUT / 'accuracy_validation.json', a.validate or ['svdpp', 'time', 'nmf']
        new = validate(grids)
        doc = json.loads(vpath.read_text()) if vpath.exists() else {}      # read now: another grid may have finished meanwhile
        doc.update({g: new[g] for g in grids}); vpath.write_text(json.dumps(doc, indent=1)); return
    path = OUT / 'accuracy.json'
    old = {r['model']: r for r in json.loads(path.read_text())['rows']} if path.exists() else {}
    compile_s = warm_numba()
    print(f'numba compile/warm-up: {compile_s:.1f} s (not in the timings)', file=sys.stderr)
    rows, done = dict(old), set()
    def write():
        if path.exists(): rows.update({r['model']: r for r in json.loads(path.read_text())['rows'] if r['model'] not in done})
        doc = {'command': ' '.join(['python', 'benchmarks/accuracy_table.py', *sys.argv[1:]]), 'machine': f'{platform.machine()} CPU, {torch.get_num_threads()} torch threads, shared cores',
               'split': 'MovieLens 100K u1.base (80,000) / u1.test (20,000)', 'numba_compile_seconds': round(compile_s, 1),
               'anchors': [dict(model=m, rmse=r) for m, r in ANCHORS], 'rows': [rows[n] for n in ROWS if n in rows]}
        path.write_text(json.dumps(doc, indent=1))
    for name in (a.only if a.only is not None else ROWS):
        rows[name] = measure(name); done.add(name); print(rows[name], file=sys.stderr, flush=True); write()
    for name in a.folds:
        if name not in rows: rows[name] = measure(name)
        done.add(name); rm = [rows[name]['rmse']]
        for f in range(2, 6): rm.append(measure(name, f)['rmse']); print(f'{name} u{f}: {rm[-1]}', file=sys.stderr, flush=True)
        rows[name]['rmse_5fold_mean'] = round(float(np.mean(rm)), 4); rows[name]['rmse_folds'] = rm; write()
    t = pd.DataFrame([rows[n] for n in ROWS if n in rows] + [dict(model=m, rmse=r, description='published') for m, r in ANCHORS])
    t = t.sort_values('rmse')
    print(t[[c for c in ('model', 'rmse', 'seconds', 'seed', 'uses_test_pairs', 'rmse_5fold_mean') if c in t]].to_string(index=False))

if __name__ == '__main__': main()

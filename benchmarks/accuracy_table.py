"""The accuracy table on MovieLens 100K's canonical split u1.base/u1.test: MF's baselines, Bayesian SVD++ (plain,
flipped) and the course's variations of MF (sigmoid output, count-scaled λ, MLP head), beside published anchors.

    python benchmarks/accuracy_table.py                 # every model: u1 RMSE, MAE, seconds, seed; writes results/accuracy.json
    python benchmarks/accuracy_table.py --only bsvdpp_flipped nmf_sigmoid   # some rows (the others kept from the JSON)
    python benchmarks/accuracy_table.py --validate      # the validation grids on u1.base (90/10, seed 0) that chose CONFIGS
    python benchmarks/accuracy_table.py --folds bsvdpp_flipped   # also the 5-fold mean over u1…u5 for these rows

Hyper-parameters come from the validation part of u1.base only, never from u1.test. Timings are one process on this
machine's shared CPU cores, Numba compilation excluded (reported on its own line).
"""
import argparse, json, platform, sys, time
from pathlib import Path
import numpy as np, pandas as pd
import torch
torch.set_num_threads(1)
from recsys_nb import MF
from recsys_nb.accuracy import BayesSVDpp, NeuralMF
from recsys_nb.data import read_ratings
from recsys_nb.splits import movielens_u_split, random_split

DATA = Path(__file__).resolve().parents[2] / 'shared/data/ml-100k'
OUT = Path(__file__).resolve().parent / 'results'
SEED = 0
ANCHORS = [('GLocal-K (Han et al. 2021), ratings only', 0.8889), ('IGMC (Zhang & Chen 2020)', 0.905),
           ('GC-MC (van den Berg et al. 2017)', 0.910)]
# name: (description, factory, uses the existence of the test pairs); chosen by --validate (see VALIDATION in the JSON)
CONFIGS = {
    'mf_sparse':       ('MF sparse: biased MF, Adam (book defaults)', lambda: MF('sparse', backend='torch', progress=False, seed=SEED), False),
    'mf_bayes':        ('MF bayes: BPMF by Gibbs, k=10 (book defaults)', lambda: MF('bayes', backend='torch', progress=False, seed=SEED), False),
    'bpmf':            ('BayesSVDpp none (BPMF), k=16, 200 sweeps', lambda: BayesSVDpp(k=16, implicit='none', sweeps=200, burn_in=30, seed=SEED), False),
    'bsvdpp':          ('Bayesian SVD++, k=16, 200 sweeps', lambda: BayesSVDpp(k=16, implicit='user', sweeps=200, burn_in=30, seed=SEED), True),
    'bsvdpp_flipped':  ('Bayesian SVD++ flipped, k=16, 200 sweeps', lambda: BayesSVDpp(k=16, implicit='flipped', sweeps=200, burn_in=30, seed=SEED), True),
    'nmf_l2':          ('NeuralMF, per-rating L2 (γ=1), linear output', lambda: NeuralMF(**NMF_L2, seed=SEED), False),
    'nmf_gamma0':      ('NeuralMF, one λ for all (γ=0), linear output', lambda: NeuralMF(**NMF_G0, seed=SEED), False),
    'nmf_gamma':       ('NeuralMF, λ·n^½ (γ=½), linear output', lambda: NeuralMF(**NMF_BEST, seed=SEED), False),
    'nmf_sigmoid':     ('NeuralMF, γ=½, sigmoid output', lambda: NeuralMF(**NMF_SIGMOID, seed=SEED), False),
    'nmf_mlp':         ('NeuralMF, γ=½, + MLP head (NeuMF-style)', lambda: NeuralMF(**NMF_MLP, seed=SEED), False),
}
# NeuralMF, chosen on validation (λ = m·50^(1-γ), m in 0.03…2; epochs = the best validation epoch of that setting):
NMF_L2 = dict(k=32, gamma=1.0, lmd=0.3, lr=0.02, epochs=60)                       # best γ=1: val 0.9292
NMF_G0 = dict(k=32, gamma=0.0, lmd=30.0, lr=0.02, epochs=56)                       # best γ=0: val 0.9277
NMF_BEST = dict(k=32, gamma=0.5, lmd=0.6 * 50 ** 0.5, lr=0.02, epochs=94)         # best of all: γ=½, val 0.9230
NMF_SIGMOID = {**NMF_BEST, 'output': 'sigmoid', 'epochs': 129}                    # val 0.9267
NMF_MLP = {**NMF_BEST, 'head': 'mlp', 'epochs': 26}                               # val 0.9299

def u_split(fold):
    base, test = movielens_u_split(read_ratings(DATA / 'u.data'), fold)
    return base[['user_id', 'movie_id', 'rating']], test[['user_id', 'movie_id', 'rating']]

def fit(name, train, test_pairs):
    m = CONFIGS[name][1]()
    if isinstance(m, BayesSVDpp): return m.fit(train, implicit_pairs=test_pairs if CONFIGS[name][2] else None)
    return m.fit(train)

def warm_numba() -> float:
    "Compile the Gibbs kernels on a tiny set (cached by Numba afterwards); the seconds it took."
    t0, g = time.perf_counter(), np.random.default_rng(0)
    tiny = pd.DataFrame({'user': g.integers(0, 9, 60), 'item': g.integers(0, 7, 60), 'rating': g.integers(1, 6, 60)}).drop_duplicates(['user', 'item'])
    for imp in ('none', 'user', 'flipped'): BayesSVDpp(k=2, implicit=imp, sweeps=2, burn_in=0).fit(tiny, implicit_pairs=tiny[['user', 'item']])
    return time.perf_counter() - t0

def measure(name, fold=1) -> dict:
    base, test = u_split(fold)
    t0 = time.perf_counter()
    m = fit(name, base, test[['user_id', 'movie_id']])
    secs = time.perf_counter() - t0
    r = m.test(test)
    return dict(model=name, description=CONFIGS[name][0], fold=fold, rmse=round(r['rmse'], 4), mae=round(r['mae'], 4),
                seconds=round(secs, 1), seed=SEED, uses_test_pairs=CONFIGS[name][2])

def validate() -> dict:
    "The grids, on u1.base split 90/10 (seed 0); u1.test's and the validation pairs are the implicit pairs."
    base, test = u_split(1)
    tr, va = random_split(base, 0.1, 0)
    pairs = pd.concat([va[['user_id', 'movie_id']], test[['user_id', 'movie_id']]])
    out = {'bayes': [], 'nmf': []}
    for imp, k in [('flipped', 16), ('flipped', 32)]:       # k=32 is ~4x slower per sweep
        m = BayesSVDpp(k=k, implicit=imp, sweeps=150, burn_in=30, seed=SEED).fit(tr, implicit_pairs=pairs, eval_ratings=va)
        out['bayes'].append(dict(implicit=imp, k=k, val_rmse_by_sweep={h['sweep']: round(h['eval_rmse'], 4) for h in m.history_[39::20]}))
        print(out['bayes'][-1], file=sys.stderr, flush=True)
    def nmf(**kw):
        m = NeuralMF(epochs=200, seed=SEED, **kw).fit(tr, eval_ratings=va)
        h = [r['eval_rmse'] for r in m.history_]; b = int(np.argmin(h))
        out['nmf'].append(dict(**kw, val_rmse=round(h[b], 4), best_epoch=b + 1)); print(out['nmf'][-1], file=sys.stderr, flush=True)
    for gamma in (1.0, 0.5, 0.0):
        for m in (0.03, 0.1, 0.3, 0.6, 2.0): nmf(k=32, gamma=gamma, lmd=m * 50 ** (1 - gamma))
    best = min((r for r in out['nmf']), key=lambda r: r['val_rmse'])
    kw = {k: best[k] for k in ('k', 'gamma', 'lmd')}
    nmf(**kw, output='sigmoid'); nmf(**kw, head='mlp')
    return out

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--only', nargs='+', choices=list(CONFIGS), help='measure these rows only (the others are kept from the JSON)')
    ap.add_argument('--folds', nargs='*', choices=list(CONFIGS), default=[], help='also the 5-fold mean over u1…u5 for these rows')
    ap.add_argument('--validate', action='store_true', help='run the validation grids and write results/accuracy_validation.json')
    a = ap.parse_args()
    if not (DATA / 'u.data').exists(): sys.exit(f'accuracy_table: {DATA / "u.data"} not found (MovieLens 100K)')
    OUT.mkdir(parents=True, exist_ok=True)
    if a.validate:
        (OUT / 'accuracy_validation.json').write_text(json.dumps(validate(), indent=1)); return
    path = OUT / 'accuracy.json'
    old = {r['model']: r for r in json.loads(path.read_text())['rows']} if path.exists() else {}
    compile_s = warm_numba()
    print(f'numba compile/warm-up: {compile_s:.1f} s (not in the timings)', file=sys.stderr)
    rows, done = dict(old), set()
    def write():
        if path.exists(): rows.update({r['model']: r for r in json.loads(path.read_text())['rows'] if r['model'] not in done})
        doc = {'command': 'python benchmarks/accuracy_table.py', 'machine': f'{platform.machine()} CPU, {torch.get_num_threads()} torch thread, shared cores',
               'split': 'MovieLens 100K u1.base (80,000) / u1.test (20,000)', 'numba_compile_seconds': round(compile_s, 1),
               'anchors': [dict(model=m, rmse=r) for m, r in ANCHORS], 'rows': [rows[n] for n in CONFIGS if n in rows]}
        path.write_text(json.dumps(doc, indent=1))
    for name in (a.only if a.only is not None else [] if a.folds else CONFIGS):
        rows[name] = measure(name); done.add(name); print(rows[name], file=sys.stderr, flush=True); write()
    for name in a.folds:
        if name not in rows: rows[name] = measure(name)
        done.add(name); rm = [rows[name]['rmse']]
        for f in range(2, 6): rm.append(measure(name, f)['rmse']); print(f'{name} u{f}: {rm[-1]}', file=sys.stderr, flush=True)
        rows[name]['rmse_5fold_mean'] = round(float(np.mean(rm)), 4); rows[name]['rmse_folds'] = rm; write()
    t = pd.DataFrame([rows[n] for n in CONFIGS if n in rows] + [dict(model=m, rmse=r, description='published') for m, r in ANCHORS])
    t = t.sort_values('rmse')
    print(t[[c for c in ('model', 'rmse', 'mae', 'seconds', 'seed', 'uses_test_pairs', 'rmse_5fold_mean') if c in t]].to_string(index=False))

if __name__ == '__main__': main()

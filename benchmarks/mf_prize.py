"""Matrix factorisation at the full Netflix Prize's shape on two cores: block-parallel SGD (`recsys_nb.mf_sgd`, mode
'sgd') against LIBMF, side by side in one run.

    python benchmarks/mf_prize.py [--shape course|prize|both|small] [--threads 2] [--k 50] [--out FILE]

Shapes: `course` is the synthetic course dataset (`recsys_nb.synth.default_dataset('netflix')`: 10,000 x 10,000,
6.9M train ratings, a 2% validation split of them, its 1.7M test ratings); `prize` is the full Prize's shape
(480,189 users x 17,770 movies, 100,480,507 ratings) generated in memory by `benchmarks/mf_scale.py`'s
`synth_triples` (planted biases + rank-8 structure + noise), split 98/1/1% into train/validation/test and cached as
.npy files under $RECSYS_NB_CACHE/mf_prize (or ~/.cache/recsys_nb/mf_prize); `small` is a quick check of the script.

Each run is its own process (so that each peak RSS is its own), the contestants alternate, and both get `--threads`
threads. For each: a small grid of learning rate x lambda, chosen on the validation RMSE; then the best of each
(again, alternating, `--reps` times at the course shape). LIBMF (no biases; raw ratings, as its users give them;
lambda_p2 = lambda_q2 = lambda, no L1) runs a fixed number of iterations and reports its validation RMSE after each,
timed here as its lines arrive; ours stops when the validation RMSE has not improved for `--patience` epochs and
keeps its best epoch. Times count from the start of training, data preparation included (LIBMF's conversion and
gridding, our block layout), compilation of our kernels excluded (reported on its own). Both predict unclipped for
the comparison (LIBMF's own figures are unclipped). The time to target is the time to reach LIBMF's best validation
RMSE.

LIBMF is a benchmark-only dependency, not in settings.ini: `pip install libmf` (the PyPI sdist of LIBMF 2.0's C++
with ctypes bindings, compiled by the local C++ compiler: its default flags build the portable scalar kernels, no
SSE/AVX intrinsics and no OpenMP). Its bindings' `predict()` returns wrong values: predictions here come from
`p_factors()` and `q_factors()`.

Progress goes to stderr; one JSON object is printed on stdout and written to `--out`
(default benchmarks/results/mf_prize.json).
"""
from __future__ import annotations
import argparse, json, os, platform, resource, subprocess, sys, time
from pathlib import Path
import numpy as np

HERE = Path(__file__).resolve().parent
PLAIN = dict(lr=0.02, lmd=0.03, schedule='exponential', decay=0.9)      # the best plain rate we measured, for the record


def log(*a): print(*a, file=sys.stderr, flush=True)
def peak_rss_gb() -> float: return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


# ----------------------------------------------------------------------------------------------------- the data
def cache_root() -> Path:
    return Path(os.environ.get('RECSYS_NB_CACHE', Path.home() / '.cache' / 'recsys_nb')) / 'mf_prize'


def save_parts(d:Path, n_users:int, n_movies:int, parts:dict, info:dict):
    d.mkdir(parents=True, exist_ok=True)
    for name, (u, i, r) in parts.items():
        for c, a in zip('uir', (u, i, r)): np.save(d / f'{name}_{c}.npy', a)
    (d / 'meta.json').write_text(json.dumps(dict(n_users=n_users, n_movies=n_movies, **info)))


def prepare(shape:str) -> Path:
    "Write (or reuse) the shape's train/val/test triples as .npy files; return their folder."
    d = cache_root() / shape
    if (d / 'meta.json').exists(): return d
    t0 = time.time()
    if shape in ('course', 'small'):
        from recsys_nb.data import load_netflix
        from recsys_nb.synth import default_dataset
        from recsys_nb.mf import MFData
        data = MFData.from_rating_data(load_netflix(default_dataset('netflix' if shape == 'course' else 'small')), val_frac=0.02, seed=0)
        parts = dict(train=data.train, val=data.val, test=data.test)
        n_users, n_movies = data.n_users, data.n_movies
    else:
        sys.path.insert(0, str(HERE))
        from mf_scale import synth_triples, N_USERS, N_MOVIES
        u, i, r = synth_triples()
        part = np.random.default_rng(1).choice(np.array([0, 1, 2], np.int8), len(u), p=[0.98, 0.01, 0.01])   # keeps the sorted order
        parts = {name: (u[part == p], i[part == p], r[part == p]) for p, name in enumerate(('train', 'val', 'test'))}
        del u, i, r, part
        n_users, n_movies = N_USERS, N_MOVIES
    save_parts(d, n_users, n_movies, parts, {f'{k}_ratings': len(v[0]) for k, v in parts.items()} | {'prepare_seconds': round(time.time() - t0, 1)})
    log(f'[{shape}] data written to the cache in {time.time() - t0:.0f}s')
    return d


def load_parts(d:Path) -> tuple[dict, dict]:
    meta = json.loads((d / 'meta.json').read_text())
    return meta, {n: tuple(np.load(d / f'{n}_{c}.npy') for c in 'uir') for n in ('train', 'val', 'test')}


# ----------------------------------------------------------------------------------------------------- workers
def ours_worker(a) -> dict:
    "Train mode 'sgd' through the library (`train_mf`: fit, early stopping, best epoch restored)."
    from recsys_nb.mf import MFData
    from dataclasses import replace
    from recsys_nb.mf import run_trainer
    from recsys_nb.mf_sgd import SGDMFTrainer, sgd_config
    t = time.perf_counter()                                    # compile (or load Numba's cache) on a toy problem
    rng = np.random.default_rng(0)
    toy = MFData(30, 20, (rng.integers(0, 30, 400), rng.integers(0, 20, 400), rng.integers(1, 6, 400).astype(np.float32)),
                 None, (np.arange(5), np.arange(5), np.ones(5, np.float32)))
    tr = SGDMFTrainer(sgd_config(k=a.k, progress=False), toy, threads=a.threads); tr.step(0); tr.rmse('val'); tr.predict([0], [0])
    compile_s = time.perf_counter() - t
    meta, parts = load_parts(Path(a.data))
    data = MFData(meta['n_users'], meta['n_movies'], parts['train'], parts['test'], parts['val'])
    del parts
    options = dict(k=a.k, lr=a.lr, lmd=a.lmd, init_std=a.init_std, max_epochs=a.max_epochs, patience=a.patience, tol=0,
                   clip=False, progress=False, seed=a.seed)
    if a.rule == 'plain': options.update({k: v for k, v in PLAIN.items() if k not in ('lr', 'lmd')})
    curve, clock = [], {}
    def record(epoch, m, trainer):
        now, cpu = time.perf_counter(), time.process_time()
        prev = curve[-1] if curve else dict(seconds=clock['setup'], cpu=clock['setup_cpu'])
        curve.append(dict(epoch=epoch, seconds=round(now - clock['t0'], 3), epoch_seconds=round(now - clock['t0'] - prev['seconds'], 3),
                          cpu=round(cpu - clock['c0'], 3), epoch_cpu_seconds=round(cpu - clock['c0'] - prev['cpu'], 3),
                          train_rmse=round(m['train_rmse'], 5), val_rmse=round(m['val_rmse'], 5)))
        log(f"  epoch {epoch:3d}  {curve[-1]['seconds']:8.1f}s  val {m['val_rmse']:.4f}")
    load0 = os.getloadavg()[0]
    clock['t0'], clock['c0'] = time.perf_counter(), time.process_time()
    trainer = SGDMFTrainer(sgd_config(**options), data, threads=a.threads, adaptive=a.rule == 'adaptive')
    clock['setup'], clock['setup_cpu'] = time.perf_counter() - clock['t0'], time.process_time() - clock['c0']
    run = run_trainer(trainer, callback=record)                 # what `train_mf` does, with the setup timed
    total = time.perf_counter() - clock['t0']
    best = min(curve, key=lambda c: c['val_rmse'])
    t = run.trainer
    t.cfg = replace(t.cfg, clip=True)                           # the clipped figures too
    clipped = {f'{n}_rmse_clipped': round(t.rmse(n), 5) for n in ('val', 'test')}
    eps = [c['epoch_seconds'] for c in curve]
    return dict(contestant='ours', rule=a.rule, lr=a.lr, lmd=a.lmd, k=a.k, init_std=a.init_std, threads=a.threads, n_bands=t.n_bands,
                compile_seconds=round(compile_s, 2), setup_seconds=round(clock['setup'], 2), epochs=len(curve),
                best_epoch=best['epoch'], best_val_rmse=best['val_rmse'], test_rmse=round(run.test_rmse, 5), **clipped,
                seconds_per_epoch=round(float(np.median(eps)), 3), cpu_seconds_per_epoch=round(float(np.median([c['epoch_cpu_seconds'] for c in curve])), 3),
                total_seconds=round(total, 2), peak_rss_gb=round(peak_rss_gb(), 2), loadavg=[round(load0, 2), round(os.getloadavg()[0], 2)],
                stopped=run.info['stopped'], curve=curve)


def libmf_worker(a) -> dict:
    "LIBMF's `mf_train_test` with a validation set; its per-iteration lines go to stdout, timed by the parent."
    meta, parts = load_parts(Path(a.data))
    def triples(p):
        u, i, r = p; X = np.empty((len(u), 3), np.float32); X[:, 0], X[:, 1], X[:, 2] = u, i, r
        return X
    X, V, (tu, ti, tr) = triples(parts['train']), triples(parts['val']), parts['test']
    del parts
    from libmf import mf
    model = mf.MF(k=a.k, nr_threads=a.threads, nr_bins=a.bins, nr_iters=a.iters, eta=a.lr, lambda_p1=0.0, lambda_q1=0.0,
                  lambda_p2=a.lmd, lambda_q2=a.lmd, quiet=False, copy_data=False)
    load0 = os.getloadavg()[0]
    print('START', flush=True)
    t, c = time.perf_counter(), time.process_time()
    model.mf_train_test(X, V)
    secs, cpu = time.perf_counter() - t, time.process_time() - c
    P, Q = model.p_factors(), model.q_factors()
    def rmse(u, i, r, clip=False):
        ok = (u < len(P)) & (i < len(Q))                        # LIBMF predicts its mean b for rows without training
        uu, ii = np.where(ok, u, 0), np.where(ok, i, 0)         # ratings (it gives them NaN factors), as `mf_predict` does
        ok &= np.isfinite(P[uu, 0]) & np.isfinite(Q[ii, 0])
        pred = np.where(ok, np.einsum('ij,ij->i', np.nan_to_num(P[uu]), np.nan_to_num(Q[ii])), model.model.b)
        if clip: pred = np.clip(pred, 1, 5)
        return round(float(np.sqrt(np.mean((pred - r) ** 2))), 5)
    vu, vi, vr = (V[:, j] for j in range(3))
    vu, vi = vu.astype(np.int64), vi.astype(np.int64)
    return dict(contestant='libmf', lr=a.lr, lmd=a.lmd, k=a.k, threads=a.threads, bins=a.bins, iterations=a.iters,
                seconds=round(secs, 2), cpu_seconds=round(cpu, 2), final_val_rmse=rmse(vu, vi, vr), final_test_rmse=rmse(tu, ti, tr),
                final_test_rmse_clipped=rmse(tu, ti, tr, True), peak_rss_gb=round(peak_rss_gb(), 2),
                loadavg=[round(load0, 2), round(os.getloadavg()[0], 2)])


# ----------------------------------------------------------------------------------------------------- the parent
def spawn(kind:str, data:Path, a, lr:float, lmd:float, **extra) -> dict:
    "Run one worker process; for LIBMF, time its per-iteration lines as they arrive."
    cmd = [sys.executable, __file__, '--worker', kind, '--data', str(data), '--lr', str(lr), '--lmd', str(lmd), '--k', str(a.k),
           '--threads', str(a.threads), '--max-epochs', str(a.max_epochs), '--patience', str(a.patience), '--iters', str(extra.get('iters', a.iters)),
           '--init-std', str(a.init_std), '--rule', extra.get('rule', 'adaptive'), '--bins', str(a.bins), '--seed', str(a.seed)]
    log(f'[{kind}] lr={lr} lmd={lmd} {extra}')
    env = {**os.environ, 'PYTHONWARNINGS': 'ignore', 'OMP_WAIT_POLICY': extra.get('omp_wait', a.omp_wait)}
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    t0, rows, result = None, [], None
    for line in p.stdout:
        now = time.perf_counter()
        f = line.split()
        if line.startswith('START'): t0 = now
        elif line.startswith('RESULT '): result = json.loads(line[7:])
        elif t0 is not None and len(f) == 4 and f[0].isdigit():
            rows.append(dict(iteration=int(f[0]), seconds=round(now - t0, 3), train_rmse=float(f[1]), val_rmse=float(f[2])))
            log(f"  iter {int(f[0]):3d}  {rows[-1]['seconds']:8.1f}s  val {float(f[2]):.4f}")
    if p.wait() != 0 or result is None: raise RuntimeError(f'worker {kind} failed (exit {p.returncode})')
    result['omp_wait_policy'] = env['OMP_WAIT_POLICY']
    if kind == 'libmf':
        best = min(rows, key=lambda r: r['val_rmse'])
        it = [b['seconds'] - a_['seconds'] for a_, b in zip(rows, rows[1:])]
        result.update(best_iteration=best['iteration'], best_val_rmse=best['val_rmse'], seconds_to_best=best['seconds'],
                      seconds_per_iteration=round(float(np.median(it)), 3) if it else None, curve=rows)
    return result


def time_to(run:dict, target:float) -> float|None:
    "Seconds from the start until the validation RMSE first reaches `target` (None: never)."
    hit = [c['seconds'] for c in run['curve'] if c['val_rmse'] <= target + 1e-9]
    return hit[0] if hit else None


def summary(ours:dict, libmf:dict) -> dict:
    target = libmf['best_val_rmse']
    return {'ours (block SGD, Numba)': {
                'best val RMSE': ours['best_val_rmse'], 'epochs to best': ours['best_epoch'] + 1,
                "seconds to LIBMF's best": time_to(ours, target), 'seconds to own best': ours['curve'][ours['best_epoch']]['seconds'],
                'seconds per epoch': ours['seconds_per_epoch'], 'CPU seconds per epoch': ours['cpu_seconds_per_epoch'],
                'test RMSE': ours['test_rmse'], 'peak RSS GB': ours['peak_rss_gb'], 'lr': ours['lr'], 'λ': ours['lmd']},
            'LIBMF': {
                'best val RMSE': target, 'epochs to best': libmf['best_iteration'] + 1,
                "seconds to LIBMF's best": libmf['seconds_to_best'], 'seconds to own best': libmf['seconds_to_best'],
                'seconds per epoch': libmf['seconds_per_iteration'], 'CPU seconds per epoch': round(libmf['cpu_seconds'] / libmf['iterations'], 3),
                'test RMSE': libmf['final_test_rmse'], 'peak RSS GB': libmf['peak_rss_gb'], 'lr': libmf['lr'], 'λ': libmf['lmd']}}


def strip(run:dict) -> dict: return {k: v for k, v in run.items() if k != 'curve'}


def bench_shape(shape:str, a) -> dict:
    d = prepare(shape)
    meta = json.loads((d / 'meta.json').read_text())
    grid = dict(ours=a.prize_ours, libmf=a.prize_libmf) if shape == 'prize' else dict(ours=a.ours_grid, libmf=a.libmf_grid)
    out = dict(data=meta, grid={'ours': [], 'libmf': []})
    n = max(len(grid['ours']), len(grid['libmf']))
    for j in range(n):                                                       # alternate the contestants
        if j < len(grid['ours']): out['grid']['ours'].append(spawn('ours', d, a, *grid['ours'][j]))
        if j < len(grid['libmf']): out['grid']['libmf'].append(spawn('libmf', d, a, *grid['libmf'][j]))
    if shape != 'prize':
        out['plain_rule'] = strip(spawn('ours', d, a, PLAIN['lr'], PLAIN['lmd'], rule='plain'))
    best = {k: min(v, key=lambda r: r['best_val_rmse']) for k, v in out['grid'].items()}
    if shape != 'prize' and a.reps:                                          # the two best, again, alternating
        reps = []
        for _ in range(a.reps):
            reps.append(dict(ours=spawn('ours', d, a, best['ours']['lr'], best['ours']['lmd']),
                             libmf=spawn('libmf', d, a, best['libmf']['lr'], best['libmf']['lmd']),
                             ours_omp_active=spawn('ours', d, a, best['ours']['lr'], best['ours']['lmd'], omp_wait='ACTIVE')))
        out['side_by_side'] = [dict(ours=strip(r['ours']), libmf=strip(r['libmf']), ours_omp_active=strip(r['ours_omp_active']),
                                    summary=summary(r['ours'], r['libmf'])) for r in reps]
    out['best'] = best
    out['summary'] = summary(best['ours'], best['libmf'])
    out['grid'] = {k: [strip(r) for r in v] for k, v in out['grid'].items()}
    log(json.dumps(out['summary'], indent=1, ensure_ascii=False))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--shape', choices=['course', 'prize', 'both', 'small'], default='both')
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--k', type=int, default=50)
    p.add_argument('--max-epochs', type=int, default=40, help='ours: epoch limit')
    p.add_argument('--patience', type=int, default=3, help='ours: epochs without a better validation RMSE before stopping')
    p.add_argument('--iters', type=int, default=30, help='LIBMF: iterations')
    p.add_argument('--init-std', type=float, default=0.02)
    p.add_argument('--bins', type=int, default=26, help="LIBMF's nr_bins (its bindings' default)")
    p.add_argument('--reps', type=int, default=2, help='side-by-side repetitions of the two best (course shape)')
    p.add_argument('--ours-grid', type=json.loads, help='ours: [[lr, lambda], ...] (default: lr 0.03, 0.05, 0.07 x lambda 0.015, 0.02, 0.03)',
                   default=[[lr, lmd] for lr in (0.03, 0.05, 0.07) for lmd in (0.015, 0.02, 0.03)])
    p.add_argument('--libmf-grid', type=json.loads, help='LIBMF: [[eta, lambda], ...] (default: eta 0.02, 0.03, 0.05, 0.1 x lambda 0.02, 0.03, 0.05)',
                   default=[[eta, lmd] for eta in (0.02, 0.03, 0.05, 0.1) for lmd in (0.02, 0.03, 0.05)])
    p.add_argument('--prize-ours', type=json.loads, default=[[0.05, 0.02], [0.05, 0.03]], help='ours at the Prize shape: [[lr, lambda], ...]')
    p.add_argument('--prize-libmf', type=json.loads, default=[[0.03, 0.02], [0.05, 0.03]], help='LIBMF at the Prize shape: [[eta, lambda], ...]')
    p.add_argument('--prize-iters', type=int, default=20, help='LIBMF: iterations at the Prize shape')
    p.add_argument('--seed', type=int, default=42)
    p.add_argument('--omp-wait', default='PASSIVE', help="OMP_WAIT_POLICY of the workers: Numba's OpenMP threads busy-wait "
                   "by default, which on a machine shared with other work costs more than it saves (LIBMF's threads wait passively)")
    p.add_argument('--merge', action='store_true', help='keep the other shapes already in --out')
    p.add_argument('--out', default=str(HERE / 'results' / 'mf_prize.json'))
    p.add_argument('--worker', choices=['ours', 'libmf'], help=argparse.SUPPRESS)
    p.add_argument('--data', help=argparse.SUPPRESS)
    p.add_argument('--lr', type=float, help=argparse.SUPPRESS)
    p.add_argument('--lmd', type=float, help=argparse.SUPPRESS)
    p.add_argument('--rule', default='adaptive', help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        res = (ours_worker if a.worker == 'ours' else libmf_worker)(a)
        print('RESULT ' + json.dumps(res), flush=True); return
    command = 'python benchmarks/mf_prize.py ' + ' '.join(argv if argv is not None else sys.argv[1:])
    out = dict(threads=a.threads, k=a.k, machine=dict(cpus=os.cpu_count(), python=platform.python_version()), shapes={})
    if a.merge and Path(a.out).exists(): out['shapes'] = json.loads(Path(a.out).read_text())['shapes']
    for s in (['course', 'prize'] if a.shape == 'both' else [a.shape]):
        if s == 'prize': a.iters = a.prize_iters
        t, load = time.time(), [round(x, 2) for x in os.getloadavg()]
        res = bench_shape(s, a)
        out['shapes'][s] = dict(command=command, started=time.strftime('%Y-%m-%d %H:%M', time.localtime(t)), minutes=round((time.time() - t) / 60, 1),
                                loadavg_start=load, loadavg_end=[round(x, 2) for x in os.getloadavg()], omp_wait_policy=a.omp_wait, **res)
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(out, indent=1, ensure_ascii=False) + '\n')   # after each shape: a partial result survives
    print(json.dumps(out, ensure_ascii=False))


if __name__ == '__main__':
    main()

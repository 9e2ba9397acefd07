"""Seconds per epoch of data-parallel sparse full-batch matrix factorisation: one process against two, PyTorch and JAX.

    python benchmarks/mf_dist_bench.py [--size netflix] [--k 50] [--epochs 5]

Every configuration is a fresh set of local processes started by `recsys_nb.mf_dist.launch` (torchrun for PyTorch,
one process per id with a local coordinator for JAX), each process running this script as a worker: one process with
one thread, one process with two threads, and two processes with one thread each (threads: OMP_NUM_THREADS and
NUMBA_NUM_THREADS; XLA's CPU thread pool ignores both). For reference, the single-process trainers of `recsys_nb.mf`
(`TorchMFTrainer`, `JaxMFTrainer` on one device, which computes its gradient with CSR products rather than the
gathers of the multi-device path) are timed the same way in a child process with two threads. An epoch is one full-batch step (with its all-reduce) plus the
test RMSE, the results fetched to the host; one warm-up epoch, which absorbs JAX's compilation and numba's cache load,
runs before the clock and is reported on its own. The dataset is the synthetic Netflix-format preset `--size`
(`recsys_nb.synth.default_dataset`; 'netflix': 10,000 users x 10,000 movies, 6.9M train / 1.7M test ratings, the
course's shape). Progress goes to stderr; the last line of stdout is one JSON object.
"""
from __future__ import annotations
import argparse, json, os, statistics, subprocess, sys, time

CONFIGS = ((1, 1), (1, 2), (2, 1))   # (processes, threads per process)


def log(*a): print(*a, file=sys.stderr, flush=True)


def time_epochs(trainer, epochs:int) -> dict:
    "Warm-up epoch, then `epochs` timed epochs (step + test RMSE, fetched): seconds and the last metrics."
    def one(e): return {k: float(v) for k, v in {**trainer.step(e), **trainer.evaluate()}.items()}
    t0 = time.perf_counter(); one(0); first = time.perf_counter() - t0
    times = []
    for e in range(1, epochs + 1):
        t0 = time.perf_counter(); m = one(e); times.append(time.perf_counter() - t0)
    return dict(warmup_epoch_s=round(first, 3), seconds_per_epoch=round(statistics.median(times), 4),
                epochs_s=[round(t, 4) for t in times], last_epoch=m)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--size', default='netflix', help="synthetic preset: 'tiny', 'small' or 'netflix' (default)")
    p.add_argument('--k', type=int, default=50)
    p.add_argument('--epochs', type=int, default=5, help='timed epochs after the warm-up one')
    p.add_argument('--backends', nargs='*', default=['torch', 'jax'])
    p.add_argument('--timeout', type=float, default=1800, help='seconds per configuration')
    args = p.parse_args(argv)
    from recsys_nb.mf_dist import launch
    from recsys_nb.synth import default_dataset, SYNTH_PRESETS
    data = default_dataset(args.size)
    shape = SYNTH_PRESETS[args.size]
    out = dict(dataset=f'synthetic {args.size!r} preset', shape=[shape['n_users'], shape['n_movies']],
               train_ratings=shape['n_train'], test_ratings=shape['n_test'], k=args.k, epochs_timed=args.epochs,
               cpu_count=os.cpu_count(), loadavg_before=round(os.getloadavg()[0], 2), seconds_per_epoch={}, runs={})
    opts = ['--data', str(data), '--k', str(args.k), '--max-epochs', str(args.epochs), '--no-progress']
    for backend in args.backends:
        for nproc, threads in CONFIGS:
            name = f'{backend} {nproc} process{"es" if nproc > 1 else ""} x {threads} thread{"s" if threads > 1 else ""}'
            t0 = time.time()
            r = launch(backend, nproc, opts, script=__file__, threads=threads, timeout=args.timeout)
            log(f'{name}: {r["seconds_per_epoch"]} s/epoch (warm-up {r["warmup_epoch_s"]} s; {time.time() - t0:.0f} s in all)')
            out['runs'][name] = {k: r[k] for k in ('warmup_epoch_s', 'seconds_per_epoch', 'epochs_s', 'last_epoch', 'processes')}
            out['seconds_per_epoch'][name] = r['seconds_per_epoch']
        r = _plain(backend, data, args)
        log(f'{backend} single-process trainer: {r["seconds_per_epoch"]} s/epoch (warm-up {r["warmup_epoch_s"]} s)')
        out['runs'][f'{backend} single-process trainer'] = r
        out['seconds_per_epoch'][f'{backend} single-process trainer'] = r['seconds_per_epoch']
    out['loadavg_after'] = round(os.getloadavg()[0], 2)
    print(json.dumps(out))


def _plain(backend, data, args) -> dict:
    "Time the ordinary single-process trainer in a child process with two threads."
    env = {**os.environ, 'OMP_NUM_THREADS': '2', 'NUMBA_NUM_THREADS': '2'}
    r = subprocess.run([sys.executable, __file__, 'plain', backend, str(data), str(args.k), str(args.epochs)],
                       capture_output=True, text=True, env=env, timeout=args.timeout)
    if r.returncode: raise RuntimeError(r.stderr[-3000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def plain(backend, data, k, epochs):
    "The single-process trainer of `backend` on `data`: one JSON line of timings."
    from recsys_nb.data import load_netflix
    from recsys_nb.mf import MFData, mf_config
    if backend == 'torch': from recsys_nb.mf_torch import TorchMFTrainer as cls
    else: from recsys_nb.mf_jax import JaxMFTrainer as cls
    trainer = cls(mf_config('sparse', k=int(k), progress=False), MFData.from_rating_data(load_netflix(data)))
    print(json.dumps({**time_epochs(trainer, int(epochs)), 'processes': 1}))


def worker(argv):
    "One process of a timed run: `recsys_nb.mf_dist.main` with the timing loop (max-epochs = timed epochs)."
    from recsys_nb.mf_dist import main as dist_main, process_rank
    def work(trainer):
        return {**time_epochs(trainer, trainer.cfg.max_epochs), 'processes': process_rank(trainer.backend)[1]}
    return dist_main(argv, work=work)


if __name__ == '__main__':
    if len(sys.argv) > 1 and sys.argv[1] in ('torch', 'jax'): sys.exit(worker(sys.argv[1:]))
    if len(sys.argv) > 1 and sys.argv[1] == 'plain': sys.exit(plain(*sys.argv[2:]))
    main()

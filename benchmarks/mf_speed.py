"""Seconds per epoch of dense and sparse matrix factorisation at the course dataset's shape, side by side in one run.

    python benchmarks/mf_speed.py [--size netflix] [--k 50] [--epochs 3]

An epoch is one full-batch update plus the test RMSE, as in training. The PyTorch sparse epoch runs the fused numba
kernel when numba is installed (`recsys_nb.mf_torch.sparse_residual_grads`); it is also timed with PyTorch's own CSR
kernels (`torch_sparse_torch_kernels`). The dataset is the synthetic Netflix-format
preset (`recsys_nb.synth.default_dataset(size)`: 10,000 users x 10,000 movies, 6.9M train / 1.7M test ratings for
'netflix'). Prints progress to stderr and one JSON object as the last line of stdout.
"""
from __future__ import annotations
import argparse, json, os, statistics, sys, time
import numpy as np

from recsys_nb.data import load_netflix
from recsys_nb.synth import default_dataset
from recsys_nb.mf import MFData, mf_config
from recsys_nb.mf_jax import JaxMFTrainer
from recsys_nb import mf_torch
from recsys_nb.mf_torch import TorchMFTrainer


def log(*a): print(*a, file=sys.stderr, flush=True)


def epoch_seconds(trainer, epochs:int) -> list[float]:
    "Wall seconds of `epochs` epochs (step + evaluation, results fetched), after one warm-up epoch."
    def one(e):
        m = {**trainer.step(e), **trainer.evaluate()}
        return {k: float(v) for k, v in m.items()}
    one(0)
    out = []
    for e in range(1, epochs + 1):
        t0 = time.perf_counter(); m = one(e); out.append(time.perf_counter() - t0)
    log(f'  {trainer.backend} {trainer.cfg.mode}: {[round(s, 3) for s in out]} s/epoch, last {m}')
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--size', default='netflix')
    p.add_argument('--k', type=int, default=50)
    p.add_argument('--epochs', type=int, default=3)
    args = p.parse_args(argv)
    import torch
    t0, c0, load0 = time.time(), time.process_time(), os.getloadavg()[0]
    data = MFData.from_rating_data(load_netflix(default_dataset(args.size)))
    log(f'{data} loaded in {time.time() - t0:.1f}s')
    out = dict(dataset=f'synthetic {args.size!r} preset', shape=[data.n_users, data.n_movies], train_ratings=data.n_train,
               test_ratings=len(data.test[0]), k=args.k, cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(),
               epochs_timed=args.epochs, seconds_per_epoch={},
               numba=getattr(mf_torch.numba, '__version__', None),
               numba_threads=mf_torch.numba.get_num_threads() if mf_torch.numba is not None else None)
    # the seed's dense settings; sparse with the same loss (unbiased, AdamW weight decay) so only the algorithm differs
    common = dict(k=args.k, biased=False, reg='decay', optimizer='adamw', lr=5e-3, lmd=0.01, init_std=1.0, clip=False, progress=False)
    for backend, cls in (('jax', JaxMFTrainer), ('torch', TorchMFTrainer)):
        for mode in ('sparse', 'dense'):
            tr = cls(mf_config(mode, **common), data)
            out['seconds_per_epoch'][f'{backend}_{mode}'] = statistics.median(epoch_seconds(tr, args.epochs))
            del tr
    if mf_torch.numba is not None:      # the PyTorch sparse epoch without the fused kernel, for comparison
        tr = TorchMFTrainer(mf_config('sparse', **common), data)
        tr.kernel = 'torch'
        out['seconds_per_epoch']['torch_sparse_torch_kernels'] = statistics.median(epoch_seconds(tr, args.epochs))
        del tr
    s = out['seconds_per_epoch']
    # other processes on the machine: the 1-minute load average before and after, and this process's CPU-seconds per second
    out['load_average'] = [load0, os.getloadavg()[0]]
    out['cpu_seconds_per_wall_second'] = (time.process_time() - c0) / (time.time() - t0)
    out['dense_over_sparse'] = {b: s[f'{b}_dense'] / s[f'{b}_sparse'] for b in ('jax', 'torch')}
    if 'torch_sparse_torch_kernels' in s: out['dense_over_sparse']['torch_torch_kernels'] = s['torch_dense'] / s['torch_sparse_torch_kernels']
    out['best_dense_over_best_sparse'] = min(s['jax_dense'], s['torch_dense']) / min(s['jax_sparse'], s['torch_sparse'])
    log(json.dumps({k: out[k] for k in ('seconds_per_epoch', 'dense_over_sparse', 'best_dense_over_best_sparse')}, indent=1))
    print(json.dumps(out))


if __name__ == '__main__':
    main()

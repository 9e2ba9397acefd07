"""Spotify MPD benchmark: the two commands on the default synthetic dataset, timed; prints one JSON object.

    python benchmarks/spotify.py [--work DIR] [--steps N]
"""
import argparse, json, subprocess, sys, tempfile, time
from pathlib import Path

# the dispatcher, with the `spotify` entry added if the command table does not list it yet
CLI = ("import sys; from recsys_nb import cli; "
       "cli.COMMANDS.setdefault('spotify', ('recsys_nb.spotify', 'Spotify')); sys.exit(cli.main(sys.argv[1:]))")


def run(*args):
    t0 = time.time()
    r = subprocess.run([sys.executable, '-c', CLI, *map(str, args), '--json'], capture_output=True, text=True)
    if r.returncode: sys.exit(f'failed: {args}\n{r.stderr[-3000:]}')
    return json.loads(r.stdout.strip().splitlines()[-1]), time.time() - t0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--work', default=None, help='working directory (default: a new temporary one)')
    p.add_argument('--steps', type=int, default=None, help='training steps (default: the command default)')
    a = p.parse_args()
    work = Path(a.work or tempfile.mkdtemp(prefix='spotify-bench-'))
    synth, synth_wall = run('spotify', 'synth', '--out', work / 'mpd')
    steps = ['--steps', a.steps] if a.steps else []
    train, train_wall = run('spotify', 'train', '--data', work / 'mpd', '--out', work / 'run', '--fresh', *steps)
    keys = ['track_recall_at_500', 'artist_recall_at_500', 'artist_recall_at_500_multicount', 'ndcg', 'r_precision', 'clicks']
    out = {'synth_seconds': round(synth_wall, 1), 'synth_megabytes': synth['megabytes'], 'test_slices': synth['test_slices'],
           'train_command_seconds': round(train_wall, 1), 'train_loop_seconds': train['train_seconds'], 'steps': train['steps'],
           'n_train': train['n_train'], 'n_test': train['n_test'], 'n_tracks': train['n_tracks'], 'skipped': train['skipped'],
           **{f'model_{k}': round(train[k], 4) for k in keys},
           **{f'popularity_{k}': round(train['popularity_' + k], 4) for k in keys},
           **{f'random_{k}': round(train['random_' + k], 4) for k in keys}}
    print(json.dumps(out))


if __name__ == '__main__': main()

"""`recsys-nb run` (recsys_nb.pipeline) end to end on the tiny dataset: every stage, report.html and results.json, resume on a
second run."""
import json, os, re, subprocess, sys

import pytest

def _run(out, *extra, timeout=900):
    env = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'CUDA_VISIBLE_DEVICES': ''}
    cmd = [sys.executable, '-m', 'recsys_nb.cli', 'run', '--size', 'tiny', '--trials', '4', '--tune-epochs', '8',
           '--out', str(out), '--no-progress', '--json', *extra]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    assert p.returncode == 0, p.stderr[-4000:]
    return p.stderr, json.loads(p.stdout)            # stdout: the JSON object alone


def test_run_twice(tmp_path):
    out = tmp_path / 'run'
    stderr, res = _run(out)
    assert (out / 'report.html').stat().st_size > 1_000_000          # plotly.js is inlined
    page = (out / 'report.html').read_text(encoding='utf-8')
    assert 'UserCF vs matrix factorisation' in page and 'pros and cons, checked' in page
    assert '<code>recsys-nb usercf</code>' in page and '`' not in re.sub(r'<script.*?</script>', '', page, flags=re.S)   # code spans, not raw backticks
    assert '<div class="wide"><table' in page                      # a wide table scrolls by itself, not the page
    full = json.loads((out / 'results.json').read_text())
    for stage in ('data', 'usercf', 'mf', 'tune', 'analysis', 'compare', 'report'):
        assert stage in full, stage
    assert set(res['test_rmse']) >= {'UserCF', 'MF (JAX)', 'MF (PyTorch)'}             # the brief summary is the result
    assert res['search']['n_complete'] + res['search']['n_pruned'] == 4
    assert full['analysis']['conclusions']                                           # written from the run's numbers
    assert full['tune']['n_complete'] + full['tune']['n_pruned'] == 4
    assert {r['model'] for r in full['compare']['table']} >= {'UserCF', 'MF (JAX)', 'MF (PyTorch)'}
    assert 'UserCF' in stderr                                        # the results table goes to stderr with --json
    assert '[run]' not in stderr                                     # --no-progress: no log lines either
    _run(out, '--stages', 'tune')                                    # second invocation, the search alone: resumed
    full2 = json.loads((out / 'results.json').read_text())
    assert full2['tune']['ran'] == {'complete': 0, 'pruned': 0, 'fail': 0}
    assert full2['tune']['best_value'] == full['tune']['best_value']
    assert {k: v for k, v in full2.items() if k not in ('tune', 'seconds')} == {k: v for k, v in full.items() if k not in ('tune', 'seconds')}   # the other stages kept

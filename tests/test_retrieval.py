"Property, CLI and real-data tests of recsys_nb.retrieval (the notebook holds the worked examples)."
import json, os, subprocess, sys
from pathlib import Path

import numpy as np
import pytest
import jax, jax.numpy as jnp
from hypothesis import given, settings, strategies as st, HealthCheck

from recsys_nb.synth import synth_movielens
from recsys_nb.retrieval import (BruteForceIndex, Lookup, RetrievalConfig, Tokenizer, TimeFeatures, factorized_top_k,
                                 hard_negatives, load_retrieval_data, logq_correction, mask_accidental_hits,
                                 retrieval_loss, softmax_cross_entropy, top_k_candidates, train_retrieval)

ML100K = Path(__file__).parents[2]/'shared'/'data'/'ml-100k'
REPO = Path(__file__).parents[1]


def _naive_loss(q, c, extra, temperature, p, ids, remove, k_hard, w):
    "The Retrieval loss written with NumPy loops, one row at a time."
    cands = c if extra is None else np.concatenate([c, extra])
    total = 0.0
    for i in range(len(q)):
        s = cands @ q[i] / (temperature or 1.0)
        if p is not None: s = s - np.log(np.clip(p, 1e-6, 1.0))
        keep = [j for j in range(len(cands)) if j == i or not (remove and ids[j] == ids[i])]
        if k_hard is not None:
            negs = sorted((j for j in keep if j != i), key=lambda j: -s[j])[:k_hard]
            keep = [i] + negs
        m = s[keep].max()
        total += (w[i] if w is not None else 1.0) * (m + np.log(np.exp(s[keep] - m).sum()) - s[i])
    return total


# a few batch shapes (1 query, several, with and without extra negatives): every new shape recompiles each eager op
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.sampled_from([1, 2, 5]), n_extra=st.sampled_from([0, 3]), seed=st.integers(0, 10**6),
       temperature=st.sampled_from([None, 0.2, 1.7]), use_p=st.booleans(), remove=st.booleans(),
       k_hard=st.sampled_from([None, 1, 2, 20]), weighted=st.booleans())
def test_loss_matches_naive(n, n_extra, seed, temperature, use_p, remove, k_hard, weighted):
    rng = np.random.default_rng(seed)
    q, c = rng.normal(size=(n, 3)).astype(np.float32), rng.normal(size=(n, 3)).astype(np.float32)
    extra = rng.normal(size=(n_extra, 3)).astype(np.float32) if n_extra else None
    m = n + n_extra
    ids = rng.integers(0, 3, m)        # few ids: accidental hits are common
    p = rng.uniform(0, 0.5, m).astype(np.float32) if use_p else None
    w = rng.uniform(0, 2, n).astype(np.float32) if weighted else None
    got = retrieval_loss(jnp.asarray(q), jnp.asarray(c), temperature=temperature,
                         candidate_sampling_probability=None if p is None else jnp.asarray(p),
                         candidate_ids=jnp.asarray(ids), remove_accidental_hits=remove, num_hard_negatives=k_hard,
                         sample_weight=None if w is None else jnp.asarray(w),
                         extra_candidate_embeddings=None if extra is None else jnp.asarray(extra))
    want = _naive_loss(q, c, extra, temperature, p, ids, remove, k_hard, w)
    assert np.isclose(float(got), want, rtol=1e-4, atol=1e-4)


def test_loss_gradients_match_plain_autodiff():
    "The custom backward pass of `dot_scores` and the fast positive path give the gradients of the plain chain."
    rng = np.random.default_rng(0)
    q, c = (jnp.asarray(rng.normal(size=(8, 4)), jnp.float32) for _ in range(2))
    ids, p = jnp.asarray(rng.integers(0, 4, 8)), jnp.asarray(rng.uniform(0.01, 0.3, 8), jnp.float32)
    fast = lambda q, c: retrieval_loss(q, c, temperature=0.5, candidate_sampling_probability=p, candidate_ids=ids,
                                       remove_accidental_hits=True)
    plain = lambda q, c: softmax_cross_entropy(jnp.eye(8), mask_accidental_hits(jnp.eye(8), logq_correction(q @ c.T / 0.5, p), ids))
    for a, b in zip(jax.grad(fast, (0, 1))(q, c), jax.grad(plain, (0, 1))(q, c)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 40), n_corpus=st.integers(1, 60), seed=st.integers(0, 10**6), bs=st.integers(1, 50))
def test_factorized_top_k_matches_sorting(n, n_corpus, seed, bs):
    rng = np.random.default_rng(seed)
    q, c = rng.normal(size=(n, 5)).astype(np.float32), rng.normal(size=(n_corpus, 5)).astype(np.float32)
    true = rng.integers(0, n_corpus, n)
    rank = (np.argsort(-(q @ c.T), axis=1, kind='stable') == true[:, None]).argmax(1)
    ks = (1, 5, 10, 50, 100)
    got = factorized_top_k(q, c, true, ks, batch_size=bs)
    for k in ks: assert got[f'top_{k}_accuracy'] == pytest.approx(float((rank < k).mean()))


def test_hard_negatives_keeps_positive_and_best_negatives():
    logits = jnp.array([[5., 1., 9., 3.], [0., 0., 7., 8.]])
    labels = jnp.array([[1., 0., 0., 0.], [0., 1., 0., 0.]])
    l, y = hard_negatives(logits, labels, 2)
    assert sorted(np.asarray(l[0]).tolist()) == [3., 5., 9.] and sorted(np.asarray(l[1]).tolist()) == [0., 7., 8.]
    assert np.asarray(y.sum(1)).tolist() == [1., 1.]


def test_features_roundtrip():
    lk = Lookup(np.array(['b', 'a']))
    assert lk(['a', 'b', 'c']).tolist() == [1, 2, 0] and lk.values([2]).tolist() == ['b']
    tok = Tokenizer().fit(['Les Misérables (1995)', "Schindler's List (1993)"])
    assert tok.encode(['les misérables'])[0].tolist() == [tok.vocab.index('les'), tok.vocab.index('misérables')]
    tf = TimeFeatures.fit(np.arange(0, 1001))
    assert tf.bucket([0, 500, 1000, 2000]).tolist() == [1, 500, 1000, 1000]


def test_index_save_load(tmp_path):
    rng = np.random.default_rng(0)
    idx = BruteForceIndex(rng.normal(size=(30, 4)), ids=np.array([f't{i}' for i in range(30)]))
    q = rng.normal(size=(7, 4))
    back = BruteForceIndex.load(idx.save(tmp_path/'i.npz'))
    for a, b in zip(idx.search(q, 5), back.search(q, 5)): np.testing.assert_array_equal(a, b)
    _, rows = top_k_candidates(q, idx.embeddings, 5)
    np.testing.assert_array_equal(idx.search(q, 5)[1], idx.ids[rows])


def test_training_is_deterministic(tmp_path):
    data = load_retrieval_data(synth_movielens(tmp_path/'ml', 'tiny', seed=1))
    cfg = RetrievalConfig(layer_sizes=(8,), embedding_dim=8, epochs=2, batch_size=256, eval_every=2, ks=(10,),
                          extra_negatives=16, logq=True, remove_accidental_hits=True)
    a, b = train_retrieval(cfg, data, progress=False), train_retrieval(cfg, data, progress=False)
    assert a.history.df['loss'].tolist() == b.history.df['loss'].tolist() and a.metrics == b.metrics


_CLI = """
import argparse, sys
from recsys_nb.retrieval import register_cli
from recsys_nb.cli import emit
p = argparse.ArgumentParser(prog='recsys-nb'); register_cli(p.add_subparsers(dest='command'))
a = p.parse_args(sys.argv[1:]); emit(a.func(a), as_json=a.json)
"""

def _run_cli(args):
    env = {**os.environ, 'JAX_PLATFORMS': 'cpu'}
    from recsys_nb.cli import COMMANDS
    cmd = [sys.executable, '-m', 'recsys_nb.cli', 'retrieval'] if 'retrieval' in COMMANDS else [sys.executable, '-c', _CLI, 'retrieval']
    return subprocess.run(cmd + args, capture_output=True, text=True, cwd=REPO, env=env, timeout=600)


def test_cli_json(tmp_path):
    d = synth_movielens(tmp_path/'ml', 'tiny', seed=0)
    out = _run_cli(['--movielens', str(d), '--layer-sizes', '8', '--embedding-dim', '8', '--epochs', '1', '--batch-size', '512', '--no-progress', '--json'])
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    for k in (1, 5, 10, 50, 100): assert 0 <= res[f'top_{k}_accuracy'] <= 1
    assert res['seconds'] > 0 and res['config']['layer_sizes'] == [8]


def test_cli_train_test_files(tmp_path):
    "--train/--test: ratings files; titles come from the u.item beside them."
    d = synth_movielens(tmp_path/'ml', 'tiny', seed=0)
    lines = (d/'u.data').read_text().splitlines()
    (d/'train.data').write_text('\n'.join(lines[:5000]) + '\n'); (d/'test.data').write_text('\n'.join(lines[5000:]) + '\n')
    out = _run_cli(['--train', str(d/'train.data'), '--test', str(d/'test.data'), '--layer-sizes', '8', '--embedding-dim', '8',
                    '--epochs', '1', '--batch-size', '512', '--no-progress', '--json'])
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res['test_examples'] == len(lines) - 5000 and res['candidates'] == len((d/'u.item').read_bytes().splitlines())


def test_cli_rejects_two_sources(tmp_path):
    out = _run_cli(['--movielens', str(tmp_path), '--data', str(tmp_path)])
    assert out.returncode != 0 and 'one of' in out.stderr


@pytest.mark.skipif(not ML100K.exists(), reason='needs ../shared/data/ml-100k')
def test_movielens_100k_split_and_features():
    data = load_retrieval_data(ML100K)
    assert len(data.train['candidate']) == 80_000 and len(data.test['candidate']) == 20_000
    assert len(data.features.corpus) == 1_664 and data.report['duplicate_titles'] == 18
    assert len(data.features.users.vocab) == 943 and data.features.time.n_buckets == 1_001
    assert any('é' in t for t in data.features.corpus)      # Latin-1 titles decoded
    assert len(data.features.tokenizer) < 10_000            # the whole title vocabulary fits

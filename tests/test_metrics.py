"""Property tests: the vectorised ranking metrics agree with naive per-query loops."""
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from sklearn.metrics import roc_auc_score

from recsys_nb.metrics import (auc, clicks, hit_rate_at_k, hits_at_k, mrr, ndcg_at_k, pad_relevant, precision_at_k,
                               r_precision, r_precision_with_artists, ranking_metrics, recall_at_k, top_k_accuracy)

pytestmark = pytest.mark.filterwarnings('ignore::RuntimeWarning')


def naive(ranked, relevant, k):
    "Per-query metrics computed the slow, obvious way."
    out = []
    for row, rel in zip(ranked, relevant):
        rel = {int(x) for x in rel if x >= 0}
        seen, hits = set(), []
        for x in row:
            hits.append(int(x) >= 0 and int(x) in rel and int(x) not in seen)
            seen.add(int(x))
        hk = hits[:k]
        R = len(rel)
        first = next((j for j, h in enumerate(hits) if h), None)
        first_k = next((j for j, h in enumerate(hk) if h), None)
        dcg = sum(1 / math.log2(j + 2) for j, h in enumerate(hk) if h)
        idcg = sum(1 / math.log2(j + 2) for j in range(min(R, k)))
        first500 = next((j for j, h in enumerate(hits[:500]) if h), None)
        out.append(dict(hits=sum(hk), recall=sum(hk) / R if R else np.nan, precision=sum(hk) / k,
                        hit_rate=float(any(hk)), ndcg=dcg / idcg if R else np.nan,
                        rprec=sum(hits[:R]) / R if R else np.nan, mrr=1 / (first_k + 1) if first_k is not None else 0.0,
                        clicks=first500 // 10 if first500 is not None else 51))
    return {key: np.array([o[key] for o in out], dtype=float) for key in out[0]}


@st.composite
def ranking_case(draw):
    n = draw(st.integers(1, 6))
    K = draw(st.integers(1, 12))
    n_items = draw(st.integers(1, 40))
    ranked = np.array(draw(st.lists(st.lists(st.integers(-1, n_items), min_size=K, max_size=K), min_size=n, max_size=n)))
    relevant = [np.array(draw(st.lists(st.integers(0, n_items), max_size=8)), dtype=np.int64) for _ in range(n)]
    k = draw(st.integers(1, K + 3))
    return ranked, relevant, k


@settings(max_examples=300, deadline=None)
@given(ranking_case())
def test_ranking_metrics_match_naive(case):
    ranked, relevant, k = case
    ref = naive(ranked, relevant, k)
    for rel in (relevant, pad_relevant(relevant)):
        np.testing.assert_allclose(hits_at_k(ranked, rel, k, reduce=False), ref['hits'])
        np.testing.assert_allclose(recall_at_k(ranked, rel, k, reduce=False), ref['recall'])
        np.testing.assert_allclose(precision_at_k(ranked, rel, k, reduce=False), ref['precision'])
        np.testing.assert_allclose(hit_rate_at_k(ranked, rel, k, reduce=False), ref['hit_rate'])
        np.testing.assert_allclose(ndcg_at_k(ranked, rel, k, reduce=False), ref['ndcg'])
        np.testing.assert_allclose(r_precision(ranked, rel, reduce=False), ref['rprec'])
        np.testing.assert_allclose(mrr(ranked, rel, k, reduce=False), ref['mrr'])
        np.testing.assert_allclose(clicks(ranked, rel, reduce=False), ref['clicks'])
    if not np.isnan(ref['recall']).all():
        np.testing.assert_allclose(recall_at_k(ranked, relevant, k), np.nanmean(ref['recall']))
        m = ranking_metrics(ranked, relevant, k)
        np.testing.assert_allclose(m[f'ndcg@{k}'], np.nanmean(ref['ndcg']))
        np.testing.assert_allclose(m[f'mrr@{k}'], ref['mrr'].mean())
        np.testing.assert_allclose(m['clicks'], ref['clicks'].mean())


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=1, max_size=15), st.lists(st.integers(0, 4), min_size=1, max_size=15))
def test_auc_matches_sklearn(pos, neg):
    y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    np.testing.assert_allclose(auc(np.array(pos, float), np.array(neg, float)), roc_auc_score(y, np.r_[pos, neg]))


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 8), st.integers(2, 10), st.integers(0, 10_000))
def test_top_k_forms_agree(n, C, seed):
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(n, C))
    t = rng.integers(0, C, n)
    ranked = np.argsort(-scores, axis=1)
    ks = tuple(range(1, C + 1))
    assert top_k_accuracy(scores, t, ks) == top_k_accuracy(ranked, t, ks)
    assert top_k_accuracy(scores, t, C) == 1.0


def test_artist_credit_bounds():
    rng = np.random.default_rng(0)
    tracks = rng.integers(0, 50, (30, 20))
    artists = tracks // 5
    rel = [rng.choice(50, size=rng.integers(1, 10), replace=False) for _ in range(30)]
    v = r_precision_with_artists(tracks, rel, artists, [r // 5 for r in rel], reduce=False)
    plain = r_precision(tracks, rel, reduce=False)
    assert ((v >= plain - 1e-12) & (v <= 1 + 1e-12)).all()
    np.testing.assert_allclose(r_precision_with_artists(tracks, rel, artists, [r // 5 for r in rel], artist_credit=0,
                                                        reduce=False), plain)

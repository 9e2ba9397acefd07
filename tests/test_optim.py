"The shared Optax factory builds exactly the transformations the chapters wrote by hand, and the chapters use it."
import jax, jax.numpy as jnp, numpy as np, optax, pytest
from recsys_nb.optim import make_optimizer, kernel_mask, warmup_cosine


def after_steps(tx, n=4):
    key = jax.random.PRNGKey(0)
    p = {'kernel': jax.random.normal(key, (3, 2)), 'bias': jnp.ones(2)}
    state = tx.init(p)
    for i in range(n):
        g = jax.tree.map(lambda x: jax.random.normal(jax.random.fold_in(key, i + 1), x.shape), p)
        u, state = tx.update(g, state, p)
        p = optax.apply_updates(p, u)
    return jax.tree.leaves(p)


def stl_schedule(lr, steps):
    return optax.warmup_cosine_decay_schedule(0.0, lr, warmup_steps=max(1, min(100, steps // 10)),
                                              decay_steps=max(2, steps), end_value=0.02 * lr)


@pytest.mark.parametrize('ours, theirs', [
    (lambda: make_optimizer('adamw', 0.05, weight_decay=0.1), lambda: optax.adamw(0.05, weight_decay=0.1)),
    (lambda: make_optimizer('adam', 0.05, weight_decay=0.1), lambda: optax.chain(optax.add_decayed_weights(0.1), optax.adam(0.05))),
    (lambda: make_optimizer('sgd', 0.05), lambda: optax.sgd(0.05)),
    (lambda: make_optimizer('sgd', 0.01, momentum=0.98), lambda: optax.sgd(0.01, momentum=0.98)),
    (lambda: make_optimizer('rmsprop', 0.01, momentum=0.98), lambda: optax.rmsprop(0.01)),
    (lambda: make_optimizer('adagrad', 0.1), lambda: optax.adagrad(0.1, initial_accumulator_value=0.1, eps=1e-7)),
    (lambda: make_optimizer('adamw', warmup_cosine(1e-3, 50), weight_decay=1e-4, decay_mask=kernel_mask),
     lambda: optax.adamw(stl_schedule(1e-3, 50), weight_decay=1e-4, mask=lambda p: jax.tree_util.tree_map(lambda x: x.ndim > 1, p))),
])
def test_bit_identical_to_the_hand_written_optimizers(ours, theirs):
    assert all(np.array_equal(a, b) for a, b in zip(after_steps(ours()), after_steps(theirs())))


def test_refuses_bad_settings():
    for kw in (dict(name='lbfgs'), dict(learning_rate=0.0), dict(momentum=1.0), dict(weight_decay=-1.0)):
        with pytest.raises(ValueError): make_optimizer(**{'name': 'sgd', 'learning_rate': 0.1, **kw})


def test_chapters_use_the_factory():
    from recsys_nb.mf import mf_config
    from recsys_nb.mf_jax import mf_optimizer
    from recsys_nb.spotify import SpotifyConfig
    from recsys_nb.retrieval import RETRIEVAL_RECIPES, RetrievalConfig
    same = lambda a, b: all(np.array_equal(x, y) for x, y in zip(after_steps(a), after_steps(b)))
    assert same(mf_optimizer(mf_config('dense', lr=0.1, lmd=0.5)), optax.adamw(0.1, weight_decay=0.5))
    assert same(mf_optimizer(mf_config('sparse', lr=0.1, lmd=0.5)), optax.adam(0.1))   # reg='l2': λ is in the loss
    assert same(SpotifyConfig().optax(), optax.sgd(0.01, momentum=0.98))
    assert same(RETRIEVAL_RECIPES['tfrs'].optax(), optax.adagrad(0.1, initial_accumulator_value=0.1, eps=1e-7))
    assert same(RetrievalConfig().optax(), optax.adam(0.003))
    assert same(RetrievalConfig(optimizer='adam', weight_decay=0.5).optax(), optax.adam(0.003))   # decay: AdamW only

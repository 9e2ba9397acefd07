"""Shop the Look: formats, missing images, generator determinism, image pipeline, command line (tiny presets)."""
import json, subprocess, sys
from pathlib import Path

import numpy as np
import pytest

from conftest import css_selectors

from recsys_nb.data import DataError
from recsys_nb.stl_data import find_images, load_stl, read_catalog, read_pairs, write_pairs
from recsys_nb.stl_synth import synth_stl, _digest
from recsys_nb.stl_model import Batches, crop_or_pad, load_image, make_triplets

REAL_CATALOG = Path(__file__).parents[2] / 'shared/data/stl/fashion-cat.json'
A, B, C = 'a' * 32, 'b' * 32, 'c' * 32


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    return synth_stl(tmp_path_factory.mktemp('stl') / 'tiny', 'tiny', seed=0)


def line(scene, product, bbox):
    return json.dumps({'product': product, 'scene': scene, 'bbox': bbox}) + '\n'


# --- formats -----------------------------------------------------------------------------------------------------

def test_pairs_round_trip(tmp_path):
    p = tmp_path / 'fashion.json'
    p.write_text(line(A, B, [0.1, 0.2, 0.3, 0.4]) + line(A, C, [0, 0, 1, 1]))
    df = read_pairs(p)
    assert df[['scene', 'product']].values.tolist() == [[A, B], [A, C]]
    np.testing.assert_allclose(df.loc[0, ['left', 'top', 'right', 'bottom']].astype(float), [0.1, 0.2, 0.3, 0.4], rtol=1e-6)
    write_pairs(df, tmp_path / 'again.json')
    assert read_pairs(tmp_path / 'again.json').equals(df)


@pytest.mark.parametrize('text, problem', [
    (line(A, B, [0.1, 0.2, 0.3]), 'bbox must be a list of 4 numbers'),
    (line(A, B, [0.1, 0.2, 1.3, 0.4]), 'bbox must satisfy'),
    (line(A, 'XYZ', [0.1, 0.2, 0.3, 0.4]), 'product is not an image signature'),
    ('{"scene": "%s", "bbox": [0, 0, 1, 1]}\n' % A, "missing key 'product'"),
    ('[1, 2]\n', 'expected a JSON object'),
    ('{"scene": \n', 'invalid JSON'),
])
def test_pairs_errors_name_file_and_line(tmp_path, text, problem):
    p = tmp_path / 'fashion.json'
    p.write_text(line(A, B, [0, 0, 1, 1]) + text)
    with pytest.raises(DataError) as e: read_pairs(p)
    assert e.value.line == 2 and problem in str(e.value) and str(p) in str(e.value)


def test_catalog_errors(tmp_path):
    p = tmp_path / 'cat.json'
    p.write_text(json.dumps({A: 'X|Y', 'nothex': 'X'}))
    with pytest.raises(DataError, match='not an image signature'): read_catalog(p)
    p.write_text('["a"]')
    with pytest.raises(DataError, match='expected a JSON object'): read_catalog(p)


def test_nested_image_layout(tmp_path):
    nested = tmp_path / A[0:2] / A[2:4] / A[4:6]
    nested.mkdir(parents=True)
    (nested / f'{A}.jpg').write_bytes(b'')
    (tmp_path / f'{B}.jpg').write_bytes(b'')
    assert set(find_images(tmp_path)) == {A, B}


# --- valid pairs and missing images --------------------------------------------------------------------------------

def test_missing_images_are_counted(tmp_path):
    from PIL import Image
    img = tmp_path / 'images'; img.mkdir()
    D = 'd' * 32
    for s in (A, B, C): Image.new('RGB', (8, 8)).save(img / f'{s}.jpg')        # D (a product) has no image
    (tmp_path / 'fashion.json').write_text(line(A, B, [0, 0, 1, 1]) + line(A, D, [0, 0, 1, 1]) +
                                           line('e' * 32, C, [0, 0, 1, 1]) + line(A, B, [0, 0, 1, 1]))
    (tmp_path / 'fashion-cat.json').write_text(json.dumps({B: 'X|Shoes', D: 'X|Pants', 'f' * 32: 'X|Tops'}))
    d = load_stl(tmp_path)
    r = d.report
    assert len(d.pairs) == r['valid_pairs'] == 1 and r['pairs'] == 3 and r['duplicates'] == 1
    assert r['pairs_missing_product'] == 1 and r['pairs_missing_scene'] == 1
    assert r['missing_scene_images'] == 1 and r['missing_product_images'] == 1
    assert r['pair_products_not_in_catalog'] == 1 and d.category(C) == 'unknown'
    assert d.products == [B, C] and r['catalog_missing_images'] == 2


def test_synthetic_missing_counts_match_generator(tiny):
    meta = json.loads((tiny / 'synth.json').read_text())
    d = load_stl(tiny)
    pairs = read_pairs(tiny / 'fashion.json')
    lost = pairs['scene'].isin(meta['missing_scenes']) | pairs['product'].isin(meta['missing_products'])
    assert d.report['valid_pairs'] == int((~lost).sum()) and d.report['pairs'] == len(pairs)
    assert d.report['missing_scene_images'] == pairs.loc[pairs['scene'].isin(meta['missing_scenes']), 'scene'].nunique()
    assert set(d.pairs['scene']).isdisjoint(meta['missing_scenes'])


# --- generator ------------------------------------------------------------------------------------------------------

def test_generator_is_deterministic(tiny, tmp_path):
    assert _digest(synth_stl(tmp_path / 'again', 'tiny', seed=0)) == _digest(tiny)
    assert _digest(synth_stl(tmp_path / 'other', 'tiny', seed=1)) != _digest(tiny)


def test_generator_bboxes_and_sizes(tiny):
    from PIL import Image
    pairs = read_pairs(tiny / 'fashion.json')
    assert ((pairs['left'] < pairs['right']) & (pairs['top'] < pairs['bottom'])).all()
    assert pairs.groupby('scene').size().between(2, 3).all()
    im = Image.open(next((tiny / 'images').iterdir()))
    assert im.size == (64, 64) and im.format == 'JPEG'


def test_generator_validates_settings(tmp_path):
    with pytest.raises(ValueError, match='unknown preset'): synth_stl(tmp_path, 'huge')
    with pytest.raises(TypeError, match='unknown settings'): synth_stl(tmp_path, 'tiny', n_users=3)


@pytest.mark.skipif(not REAL_CATALOG.exists(), reason='real catalog not available')
def test_generator_takes_real_category_names(tmp_path):
    d = synth_stl(tmp_path / 'r', 'tiny', seed=0, categories=REAL_CATALOG)
    assert set(read_catalog(d / 'fashion-cat.json').values()) <= set(read_catalog(REAL_CATALOG).values())


# --- image pipeline -------------------------------------------------------------------------------------------------

def test_crop_or_pad_offsets():
    x = np.arange(5 * 7).reshape(5, 7, 1)
    np.testing.assert_array_equal(crop_or_pad(x, 3, 3)[..., 0], x[1:4, 2:5, 0])
    y = crop_or_pad(x, 8, 10)
    assert y.shape == (8, 10, 1) and y[:1].sum() == 0 and (y[1:6, 1:8] == x).all()


@pytest.mark.parametrize('size, mode', [(32, 'fit'), (64, 'fit'), (48, 'crop_or_pad'), (96, 'crop_or_pad')])
def test_load_image_shape_and_range(tiny, size, mode):
    x = load_image(next((tiny / 'images').iterdir()), size, mode)
    assert x.shape == (size, size, 3) and x.dtype == np.float32 and -0.5 <= x.min() and x.max() <= 0.5


def test_batches_shapes_order_and_resume(tiny):
    paths = sorted((tiny / 'images').iterdir())[:9]
    items = [(p, p, p) for p in paths]
    with Batches(items, batch_size=4, size=32, seed=3) as b:
        got = [next(b) for _ in range(6)]
    assert all(len(t) == 3 and t[0].shape == (4, 32, 32, 3) for t in got)
    with Batches(items, batch_size=4, size=32, seed=3, start=8, cache=True) as b:
        np.testing.assert_array_equal(next(b)[1], got[2][1])
    b = Batches(paths, batch_size=4, size=32, seed=3)
    assert sorted(b.order(5)) == list(range(9)) and not np.array_equal(b.order(0), b.order(1))
    with Batches(paths, batch_size=4, size=32, repeat=False, shuffle=False) as b:
        assert [len(x) for x in b] == [4, 4, 1]


def test_augment_keeps_shape_range_and_is_seeded():
    from hypothesis import given, settings, strategies as st
    from recsys_nb.stl_model import augment_images

    @settings(max_examples=25, deadline=None)
    @given(st.integers(0, 2**31), st.integers(1, 5), st.integers(0, 6), st.floats(0, 0.5))
    def check(seed, n, shift, brightness):
        x = np.random.default_rng(seed).integers(0, 256, (n, 12, 10, 3), dtype=np.uint8)
        a = augment_images(x, np.random.default_rng(seed), shift=shift, brightness=brightness)
        assert a.shape == x.shape and a.dtype == np.uint8
        np.testing.assert_array_equal(a, augment_images(x, np.random.default_rng(seed), shift=shift, brightness=brightness))
        f = augment_images(x, np.random.default_rng(seed))                 # flips only: a permutation of each image's columns
        assert all((g == y).all() or (g == y[:, ::-1]).all() for g, y in zip(f, x))
    check()


def test_augmentation_is_seeded_resumable_and_off_in_evaluation(tiny):
    from recsys_nb.stl import train_stl
    from recsys_nb.stl_model import STL_CONFIGS, embed_images
    paths = sorted((tiny / 'images').iterdir())[:9]
    aug = dict(flip=True, shift=3, brightness=0.2)
    with Batches(paths, batch_size=4, size=32, seed=3, augment=aug) as b: got = [next(b) for _ in range(3)]
    with Batches(paths, batch_size=4, size=32, seed=3, augment=aug, start=8) as b: np.testing.assert_array_equal(next(b), got[2])
    with Batches(paths, batch_size=4, size=32, seed=3) as b: plain = [next(b) for _ in range(3)]
    assert any((g != p).any() for g, p in zip(got, plain)) and all(-0.5 <= g.min() and g.max() <= 0.5 for g in got)
    assert STL_CONFIGS['cpu'].augmentation() is None
    assert STL_CONFIGS['cpu'].replace(shift=2).augmentation() == dict(flip=False, shift=2, brightness=0.0)
    d = load_stl(tiny)
    run = train_stl(d, STL_CONFIGS['tiny'].replace(steps=5, log_every=5, eval_every=5, flip=True, shift=2), progress=False)
    imgs = [d.image(p) for p in d.products[:6]]
    e1, e2 = (embed_images(run.model, imgs, 'product', size=32) for _ in range(2))    # evaluation: no random changes
    np.testing.assert_array_equal(e1, e2)


def test_softmax_loss_weight_average_and_decay_train_and_resume(tiny, tmp_path):
    from recsys_nb.stl import train_stl
    from recsys_nb.stl_model import STL_CONFIGS
    d = load_stl(tiny)
    cfg = STL_CONFIGS['tiny'].replace(steps=10, log_every=5, eval_every=5, checkpoint_every=5, in_batch=True,
                                      temperature=0.1, ema=0.9, weight_decay=0.1)
    full = train_stl(d, cfg, progress=False)
    assert np.isfinite(full.history.df['loss']).all() and full.history.df['test_auc'].notna().any()
    train_stl(d, cfg.replace(steps=10), workdir=tmp_path, progress=False, callback=None)
    again = train_stl(d, cfg, workdir=tmp_path, progress=False)          # everything done: resumes at the end
    assert again.info['resumed_from'] is not None
    with pytest.raises(ValueError, match='other settings'):
        train_stl(d, cfg.replace(ema=0.5), workdir=tmp_path, progress=False)
    other = load_stl(synth_stl(tmp_path / 'other', 'tiny', seed=1))       # the same settings on other data: refused too
    with pytest.raises(ValueError, match=r'other settings or data \(data\)'):
        train_stl(other, cfg, workdir=tmp_path, progress=False)


def test_triplets_split_and_seed(tiny):
    d = load_stl(tiny)
    tr, te = make_triplets(d.pairs, num_neg=4, seed=7)
    assert (te['pair'] % 10 == 0).all() and (tr['pair'] % 10 != 0).all() and len(tr) + len(te) == 4 * len(d.pairs)
    assert make_triplets(d.pairs, 4, seed=7)[1].equals(te)
    own = d.pairs.groupby('scene')['product'].agg(set)
    assert not any(n in own[s] for s, n in zip(te['scene'], te['neg']))
    own_train = d.pairs[np.arange(len(d.pairs)) % 10 != 0].groupby('scene')['product'].agg(set)
    assert not any(n in own_train[s] for s, n in zip(tr['scene'], tr['neg']))


def test_test_triplets_do_not_depend_on_training_settings(tiny):
    from recsys_nb.stl import train_stl
    from recsys_nb.stl_model import STL_CONFIGS
    d = load_stl(tiny)
    cfg = STL_CONFIGS['tiny'].replace(steps=5, log_every=5, eval_every=5)
    a = train_stl(d, cfg, progress=False)
    b = train_stl(d, cfg, progress=False, num_neg=1, in_batch=True, negatives='catalog', normalize=True)
    assert a.test_triplets.equals(b.test_triplets) and len(b.train_triplets) * 2 == len(a.train_triplets)
    from recsys_nb.stl_model import embed_images
    e = embed_images(b.model, [d.image(p) for p in d.products[:5]], 'product', size=32)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1, rtol=1e-4)


def test_in_batch_mask_uses_training_pairs_only(tiny):
    from recsys_nb.stl import _in_batch_masker
    from recsys_nb.stl_eval import split_pairs
    d = load_stl(tiny)
    tr, _ = make_triplets(d.pairs, 2, seed=0)
    idx = np.arange(len(tr))
    mask = _in_batch_masker(d, tr)(idx)
    train_pairs, _ = split_pairs(d.pairs)
    own = set(zip(train_pairs['scene'], train_pairs['product']))
    prods = list(tr['pos']) + list(tr['neg'])
    want = np.array([[(s, p) not in own for p in prods] for s in tr['scene']], np.float32)
    np.testing.assert_array_equal(mask, want)


def test_cli_parser_matches_the_interface():
    import argparse
    from recsys_nb.stl import register_cli
    top = argparse.ArgumentParser()
    register_cli(top.add_subparsers(dest='command'))
    a = top.parse_args(['stl', 'train', '--data', 'D', '--steps', '7', '--image-size', '32', '--json'])
    assert (a.stl_command, a.steps, a.image_size, a.json) == ('train', 7, 32, True)
    assert top.parse_args(['stl', 'synth', '--out', 'D']).stl_command == 'synth'
    assert top.parse_args(['stl', 'random', '--data', 'D', '--out', 'F.html']).out == 'F.html'
    assert top.parse_args(['stl', 'recommend', '--data', 'D', '--out', 'P']).stl_command == 'recommend'


# --- command line (subprocess, tiny presets) -------------------------------------------------------------------------

RUNNER = ("import sys; from recsys_nb import cli; cli.COMMANDS.setdefault('stl', ('recsys_nb.stl', 'Shop the Look')); "
          "sys.exit(cli.main(sys.argv[1:]))")


def cli(*args, cwd=None):
    r = subprocess.run([sys.executable, '-c', RUNNER, 'stl', *map(str, args)], capture_output=True, text=True, cwd=cwd,
                       timeout=600)
    return r


def test_cli_end_to_end(tmp_path):
    d = tmp_path / 'data'
    r = cli('synth', '--out', d, '--preset', 'tiny', '--json')
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out['valid_pairs'] > 0 and (d / 'fashion.json').exists()
    r = cli('random', '--data', d, '--out', tmp_path / 'random.html', '--n', '5', '--json')
    assert r.returncode == 0, r.stderr
    assert (tmp_path / 'random.html').read_text().count('<tr>') == 6
    r = cli('train', '--data', d, '--config', 'tiny', '--steps', '10', '--image-size', '32', '--workdir',
            tmp_path / 'run', '--no-progress', '--json')
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    for k in ('test_auc', 'hr_at_10', 'random_hr_at_10', 'popular_hr_at_10', 'recall_at_10', 'coverage_at_10', 'gini_at_10'):
        assert k in res
    assert res['steps'] == 10 and (tmp_path / 'run' / 'model.msgpack').exists()
    r = cli('recommend', '--data', d, '--out', tmp_path / 'pages', '--model', tmp_path / 'run' / 'model.msgpack',
            '--pages', '2', '--json')
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / 'pages').glob('scene_*.html'))) == 2 and (tmp_path / 'pages' / 'index.html').exists()
    assert (tmp_path / 'pages' / 'product_embed.npz').exists()


def test_cli_errors_are_one_line(tmp_path):
    r = cli('recommend', '--data', tmp_path, '--out', tmp_path / 'p', '--model', tmp_path / 'none.msgpack')
    assert r.returncode != 0 and 'no trained model' in r.stderr and 'Traceback' not in r.stderr
    (tmp_path / 'fashion.json').write_text('{"scene": 1}\n')
    (tmp_path / 'fashion-cat.json').write_text('{}')
    r = cli('train', '--data', tmp_path, '--config', 'tiny', '--no-progress')
    assert r.returncode == 2 and 'fashion.json, line 1' in r.stderr and 'Traceback' not in r.stderr


def test_scene_page_boxes_sit_on_the_image(tiny):
    """A scene's boxes are placed in percent of a container that holds the image alone (not the caption below it), so
    they land where the products were pasted; every CSS rule is scoped to the fragment."""
    import re
    from recsys_nb.stl import scene_page_html, _PAGE_CSS
    data = load_stl(tiny)
    scene = data.pairs['scene'].iloc[0]
    page = scene_page_html(data, scene, list(data.products[:3]), embed=True)
    frame = re.search(r'<div class="frame">(<img [^>]*>)((?:<div class="box" [^>]*></div>)+)</div>', page)
    assert frame and frame.group(2).count('class="box"') == (data.pairs['scene'] == scene).sum()
    assert '.stl .frame{position:relative}' in _PAGE_CSS and 'position:relative' not in _PAGE_CSS.replace('.stl .frame{position:relative}', '')
    assert all(s.startswith('.stl') for s in css_selectors(_PAGE_CSS))

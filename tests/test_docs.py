"""The docs tooling: nbdev's processing (scripts/docs/nbdev_proc.py) and the renderer of its output
(scripts/build_docs.py): processed notebooks made by hand and by nbdev from a throwaway project, a few real pages, the
PDF of a few chapters, the README, the Quarto book's chapter list. The renders take seconds; the real notebooks are
processed once (only those changed since the last run). Skips only where pandoc (pypandoc_binary) or typst is missing."""
import html as H, importlib.util, json, re, subprocess, sys
from pathlib import Path

import pytest

from conftest import css_selectors

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / 'scripts' / 'build_docs.py'
NBDEV_PROC = ROOT / 'scripts' / 'docs' / 'nbdev_proc.py'
NBS = ROOT / 'nbs'


def _load():
    spec = importlib.util.spec_from_file_location('build_docs', SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod          # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


bd = _load()
CFG = bd.read_settings()
SITE = bd.site_url(CFG)                   # nbdev's link prefix: https://recsys-nb.github.io/recsys_nb


def _need_pandoc():
    pypandoc = pytest.importorskip('pypandoc', reason='pypandoc_binary (a dev requirement) is not installed')
    try: pypandoc.get_pandoc_path()
    except OSError: pytest.skip('pypandoc is installed without its pandoc binary: pip install pypandoc_binary')


def _build(*args, cwd=ROOT, script=SCRIPT, timeout=300):
    r = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, cwd=cwd, timeout=timeout)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def _text(page: str) -> str:
    "A page's main text, tags stripped."
    main = page.split('<main', 1)[1].split('</main>', 1)[0]
    return H.unescape(re.sub(r'<[^>]+>', '', re.sub(r'<script.*?</script>', '', main, flags=re.S)))


def _nb(cells, path: Path):
    "Write a notebook of (cell_type, source[, outputs]) tuples."
    out = []
    for i, (kind, src, *outs) in enumerate(cells):
        c = {'cell_type': kind, 'id': f'c{i}', 'metadata': {}, 'source': src}
        if kind == 'code': c.update(execution_count=None, outputs=outs[0] if outs else [])
        out.append(c)
    path.write_text(json.dumps({'cells': out, 'metadata': {'kernelspec': {'display_name': 'python3', 'language': 'python',
                               'name': 'python3'}}, 'nbformat': 4, 'nbformat_minor': 5}))


def _md(text): return {'output_type': 'execute_result', 'execution_count': None, 'metadata': {},
                       'data': {'text/markdown': text, 'text/plain': '<showdoc>'}}


# ---------------------------------------------------------------------------------------------------- pure functions
def test_page_names_follow_nbdev():
    assert bd.page_name('00_data.ipynb') == 'data'
    assert bd.page_name('01a_train.ipynb') == 'train'
    assert bd.page_name('index.ipynb') == 'index'
    assert bd.page_name('03_mf_jax.ipynb') == 'mf_jax'


def test_quarto_cell_options_are_parsed_and_stripped():
    opts, code = bd.cell_options('#| echo: false\n#| code-summary: "Exported source"\n#|output: asis\n\nx = 1\n#| not an option here\n')
    assert opts == {'echo': False, 'code-summary': 'Exported source', 'output': 'asis'}
    assert code == 'x = 1\n#| not an option here'
    assert bd.cell_options('x = 1') == ({}, 'x = 1')


def test_progress_bars_collapse_to_their_last_state():
    raw = '\rep:   0%|          | 0/5\rep: 100%|##########| 5/5\n\x1b[31mred\x1b[0m\n'
    assert bd.clean_stream(raw) == 'ep: 100%|##########| 5/5\nred\n'


def test_nbdev_links_go_back_to_code_in_code_blocks_only():
    md = (f'Use [`read_ratings`]({SITE}/data.html#read_ratings).\n```python\n'
          f'def f(\n    d, # a [`RatingData`]({SITE}/data.html#ratingdata)\n):\n```')
    out = bd.unlink(md, SITE, code_only=True)
    assert out.startswith(f'Use [`read_ratings`]({SITE}/data.html#read_ratings).')
    assert '    d, # a `RatingData`\n' in out
    assert bd.unlink(md, SITE) == md.replace(f'[`read_ratings`]({SITE}/data.html#read_ratings)', '`read_ratings`') \
        .replace(f'[`RatingData`]({SITE}/data.html#ratingdata)', '`RatingData`')
    assert bd.unlink('[`x`](https://elsewhere.org/p.html#x)', SITE) == '[`x`](https://elsewhere.org/p.html#x)'


def test_plotly_html_output_becomes_a_figure():
    html = ('<div><script src="https://cdn.plot.ly/plotly-4.1.1.min.js"></script><div id="a" class="plotly-graph-div">'
            '</div><script>window.PLOTLYENV={}; if (document.getElementById("a")) { Plotly.newPlot( "a", '
            '[{"type": "scatter", "y": [1, 2]}], {"title": {"text": "t"}}, {"responsive": true}) };</script></div>')
    [d] = bd.normalise_plotly({'text/html': html, 'text/plain': 'Figure'})
    fig = d[bd.PLOTLY_MIME]
    assert fig['data'] == [{'type': 'scatter', 'y': [1, 2]}] and fig['layout']['title']['text'] == 't'
    loader = '<script>window.PlotlyConfig = {};</script>\n<script type="module">import "https://cdn.plot.ly/plotly-4.1.1.min"</script>'
    assert bd.normalise_plotly({'text/html': loader}) == []


def test_quarto_book_lists_the_sidebar_chapters_in_order_and_parts():
    yaml = pytest.importorskip('yaml')
    book = yaml.safe_load((ROOT / '_quarto.yml').read_text())
    assert book['project']['type'] == 'book'
    got = []
    for ch in book['book']['chapters']:
        if isinstance(ch, str): got.append((None, Path(ch).name))
        else: got += [(ch['part'], Path(c).name) for c in ch['chapters']]
    want = [(e.part, e.file) for e in bd.read_sidebar(NBS)]
    assert got == want
    site = yaml.safe_load((NBS / '_quarto.yml').read_text())
    assert site['project']['type'] == 'website' and 'sidebar.yml' in site['metadata-files']


# ---------------------------------------------------------------------------------------------------- processed by hand
FIG = {'data': [{'type': 'scatter', 'x': [1, 2, 3], 'y': [3, 1, 2]}], 'layout': {'title': {'text': 'RMSE'}}}
SHOW_DOC_A = ('---\n\n[source](https://github.com/recsys-nb/recsys_nb/blob/main/recsys_nb/a.py#L3){target="_blank" '
              'style="float:right; font-size:smaller"}\n\n### fit_a\n\n```python\ndef fit_a(\n'
              f'    x, # like [`b_thing`]({SITE}/b.html#b_thing)\n):\n```\n\n*Fit an a.*')
SHOW_DOC_B = '---\n\n### b_thing\n\n```python\ndef b_thing():\n```\n\n*A b.*'


@pytest.fixture(scope='module')
def handmade(tmp_path_factory):
    "Processed notebooks in the shape nbdev writes them (front matter, warning cell, show_doc cells, doc-host links)."
    d = tmp_path_factory.mktemp('proc')
    (d / 'sidebar.yml').write_text('website:\n  sidebar:\n    contents:\n      - index.ipynb\n'
                                   '      - section: Data\n        contents:\n          - 01_a.ipynb\n          - 02_b.ipynb\n')
    fm = lambda t, desc, out: ('raw', f'---\ndescription: {desc}\noutput-file: {out}\ntitle: {t}\n\n---\n\n')
    warning = ('markdown', bd.NBDEV_WARNING)
    doc = lambda md: ('code', '#| echo: false\n#| output: asis\nshow_doc(x)', [_md(md)])
    _nb([fm('Home', 'The start.', 'index.html'), warning, ('markdown', f'See [`fit_a`]({SITE}/a.html#fit_a).')], d / 'index.ipynb')
    _nb([fm('Page `a`', 'All about a.', 'a.html'), warning,
         ('markdown', f'## About [`fit_a`]({SITE}/a.html#fit_a)\n\nIt calls [`b_thing`]({SITE}/b.html#b_thing) and '
                      f'[`gone`]({SITE}/a.html#gone); [`fit_a`]({SITE}/a.html#fit_a) is below, the [rest](#about-fit_a).'),
         doc(SHOW_DOC_A),
         ('code', '#| output: false\nshown_code = 1', [{'output_type': 'stream', 'name': 'stdout', 'text': 'HIDDEN_OUTPUT\n'}]),
         ('code', '#| include: false\nSECRET_CELL = 1', [{'output_type': 'stream', 'name': 'stdout', 'text': 'SECRET_OUTPUT\n'}]),
         ('code', '#| code-fold: show\n#| code-summary: "Exported source"\ndef folded(): pass'),
         ('code', '#| echo: false\nfor _ in bar: pass', [{'output_type': 'stream', 'name': 'stderr',
                                                          'text': '\rtrain:   0%|     | 0/9\rtrain: 100%|=====| 9/9\n'}]),
         ('code', '#| echo: false\nfig.show()', [{'output_type': 'display_data', 'metadata': {}, 'data': {bd.PLOTLY_MIME: FIG}}])],
        d / '01_a.ipynb')
    _nb([fm('Page b', 'All about b.', 'b.html'), warning, doc(SHOW_DOC_B),
         ('markdown', f'Back to [`fit_a`]({SITE}/a.html#fit_a) and [`gone`]({SITE}/a.html#gone).'),
         ('markdown', '## 1. First part\n\nOne.\n\n## 2. Second part\n\nTwo.')], d / '02_b.ipynb')
    return d


def test_a_processed_notebook_reads_as_quarto_shows_it(handmade):
    p = bd.read_page(bd.Entry('01_a.ipynb', 'Data'), handmade)
    assert (p.name, p.title, p.description, p.warnings) == ('a', 'Page `a`', 'All about a.', [])
    assert [c.kind for c in p.cells] == ['markdown', 'code', 'code', 'code', 'code', 'code']
    sd, out_false, fold, bar, chart = p.cells[1:]
    assert sd.text == '' and sd.outputs[0].asis
    assert out_false.text == 'shown_code = 1' and out_false.outputs == []
    assert (fold.fold, fold.fold_open, fold.text) == ('Exported source', True, 'def folded(): pass')
    assert bar.text == '' and bar.outputs[0].text == 'train: 100%|=====| 9/9'
    assert bd.PLOTLY_MIME in chart.outputs[0].data
    assert not any('SECRET' in c.text or bd.NBDEV_WARNING in c.text for c in p.cells)


def test_site_from_processed_notebooks(handmade, tmp_path):
    _need_pandoc()
    pytest.importorskip('plotly')
    out = tmp_path / 'site'
    r = _build('html', '--proc', str(handmade), '--out', str(out))
    a, b, index = ((out / f'{n}.html').read_text() for n in ('a', 'b', 'index'))
    # the front matter: title and description; the sidebar's order and sections
    assert 'class="title">Page <code>a</code></h1>' in a and 'All about a.' in a and '<title>Page a – ' in a
    assert '<li class="part"><span>Data</span>' in a and 'rel="prev"' in a and 'rel="next"' in a
    # nbdev's links: relative in the site, to the same page as a fragment; one to no anchor keeps its text
    assert 'href="#fit_a"' in a and 'href="b.html#b_thing"' in a and 'href="a.html#fit_a"' in b + index
    assert SITE not in a + b + index
    assert 'gone' in _text(a) and '#gone' not in a + b and 'a.html#gone' in r.stderr
    assert 'href="#about-fit_a"' in a and 'id="about-fit_a"' in a and 'id="fit_a"' in a
    heading = re.search(r'<h2 id="about-fit_a">(.*?)</h2>', a, re.S).group(1)
    assert '<a' not in heading and 'fit_a' in heading
    # show_doc: a box, its source link, no link markdown inside the signature
    box = re.search(r'<div class="cell-output cell-output-markdown">(.*?)</div>\s*</div>', a, re.S).group(1)
    assert 'a.py#L3' in box and 'b_thing' in _text('<main>' + box + '</main>') and '](' not in H.unescape(box)
    # Quarto's options: output false, include false, code-fold, echo false
    text = _text(a)
    assert 'shown_code = 1' in text and 'HIDDEN_OUTPUT' not in text
    assert 'SECRET' not in text and '#|' not in text and 'show_doc(x)' not in text and 'for _ in bar' not in text
    assert '<details class="code-fold" open><summary>Exported source</summary>' in a
    assert 'train: 100%|=====| 9/9' in text and '0/9' not in text
    # the chart, drawn offline by the site's own plotly.js
    assert 'Plotly.newPlot("a-fig-1"' in a and 'site_libs/plotly.min.js' in a
    assert (out / 'site_libs' / 'plotly.min.js').stat().st_size > 1_000_000
    assert not re.search(r'<(script|link)[^>]+(src|href)="https?://', a + b + index), 'a page loads from the network'


def test_book_from_processed_notebooks(handmade, tmp_path):
    _need_pandoc()
    pytest.importorskip('typst', reason='typst (a dev requirement) is not installed')
    out = tmp_path / 'site'
    _build('pdf', '--proc', str(handmade), '--out', str(out), '--cache', str(tmp_path / 'cache'), '--keep-typ')
    assert (out / 'recsys_nb.pdf').read_bytes().startswith(b'%PDF')
    typ = (out / 'recsys_nb.typ').read_text()
    assert '#part[Data]' in typ and re.search(r'^= Page', typ, re.M) and '<a>' in typ
    assert '#link(<a--fit_a>)' in typ and '#link(<b--b_thing>)' in typ and '<a--fit_a>' in typ.replace('#link(<a--fit_a>)', '')
    assert SITE + '/a.html' not in typ and '#|' not in typ
    assert 'gone' in typ and not re.search(r'#link\([^)]*\)\[[^\]]*gone', typ)      # a missing anchor: text only
    # a chapter that numbers its own sections keeps its numbers, as text (typst reads "1. " as a numbered list)
    assert '[1\\. First part]' in typ and '[2\\. Second part]' in typ and '[1. First' not in typ


def test_quarto_route_gives_plotly_charts_an_html_form(tmp_path):
    "What `quarto-site` does to the processed notebooks: Quarto cannot show plotly's JSON mime bundle."
    pytest.importorskip('plotly')
    _nb([('code', 'fig', [{'output_type': 'display_data', 'metadata': {}, 'data': {bd.PLOTLY_MIME: FIG}}])], tmp_path / 'chart.ipynb')
    assert bd.plotly_to_html_in(tmp_path) == 1
    data = json.loads((tmp_path / 'chart.ipynb').read_text())['cells'][0]['outputs'][0]['data']
    assert bd.PLOTLY_MIME not in data and 'Plotly.newPlot(' in data['text/html']
    assert '<script src="plotly.min.js"' in data['text/html'] and (tmp_path / 'plotly.min.js').exists()


def test_book_sources_are_valid_quarto_notebooks(handmade, tmp_path):
    nbformat = pytest.importorskip('nbformat')
    pytest.importorskip('plotly')
    _build('book-sources', str(tmp_path / 'book'), '--proc', str(handmade), '--cache', str(tmp_path / 'cache'))
    for f, head in (('index.ipynb', '# Home {.unnumbered}'), ('01_a.ipynb', '# Page `a`\n\n*All about a.*')):
        nb = nbformat.read(tmp_path / 'book' / f, as_version=4)
        nbformat.validate(nb)
        assert nb.cells[0].source.startswith(head)
        assert not any(c.cell_type == 'raw' or bd.NBDEV_WARNING in c.source for c in nb.cells)
        for c in nb.cells:
            if c.cell_type == 'code':
                assert all(l.split(':')[0].strip('#| ') in ('echo', 'output', 'code-fold', 'code-summary')
                           for l in c.source.splitlines() if l.startswith('#|')), c.source
                assert not any(bd.PLOTLY_MIME in o.get('data', {}) for o in c.outputs)


# ---------------------------------------------------------------------------------------------------- nbdev's processing
TINY_SETTINGS = '''[DEFAULT]
repo = tiny
lib_name = tiny
version = 0.0.1
nbs_path = nbs
doc_path = _docs
lib_path = tiny
branch = main
user = someone
author = someone
author_email = someone@example.com
copyright = someone
description = tiny
keywords = tiny
language = English
status = 3
min_python = 3.9
license = apache2
doc_host = https://someone.github.io
doc_baseurl = /tiny
git_url = https://github.com/someone/tiny
title = tiny
custom_sidebar = True
'''


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    "A throwaway nbdev project of one notebook, processed by scripts/docs/nbdev_proc.py."
    pytest.importorskip('nbdev')
    root = tmp_path_factory.mktemp('tiny')
    (root / 'settings.ini').write_text(TINY_SETTINGS)
    nbs = root / 'nbs'; nbs.mkdir()
    (nbs / 'sidebar.yml').write_text('website:\n  sidebar:\n    contents:\n      - 01_things.ipynb\n')
    _nb([('markdown', '# Tiny things\n\n> A page of a throwaway project.'),
         ('code', '#| default_exp things'),
         ('code', '#| export\nfrom dataclasses import dataclass\n\n@dataclass\nclass Box:\n    "A box."\n'
                  '    width:int=1    # across\n    height:int=2   # up\n\n'
                  'def zeta(x): "Documented first."; return x\n\ndef omega(x): "Documented second."; return x'),
         ('code', '#| hide\nsecret_setup = 42'),
         ('code', '#| exporti\ndef helper(a:int, # the a\n          ): "Help."; return a\n\n'
                  'def alpha(y): "Alpha."; return y'),
         ('code', 'show_doc(helper)'),
         ('code', 'show_doc(Box)'),
         ('code', 'show_doc(alpha)'),
         ('code', 'assert alpha(3) == 3'),
         ('code', '#| exports\ndef folded(): "Folded."; return 1'),
         ('code', '#| echo: false\nprint("only the output")',
          [{'output_type': 'stream', 'name': 'stdout', 'text': 'only the output\n'}])],
        nbs / '01_things.ipynb')
    _build(cwd=root, script=NBDEV_PROC, timeout=300)
    return root / '_proc'


def _sources(proc: Path, name: str) -> list[str]:
    return [''.join(c['source']) for c in json.loads((proc / name).read_text())['cells']]


def test_nbdev_processing_of_a_throwaway_project(tiny):
    cells = json.loads((tiny / '01_things.ipynb').read_text())['cells']
    src = [''.join(c['source']) for c in cells]
    assert cells[0]['cell_type'] == 'raw' and 'title: Tiny things' in src[0] and 'output-file: things.html' in src[0]
    assert not any('secret_setup' in s or '#| export' in s or 'default_exp' in s for s in src)
    docs = [re.search(r'show_doc\((\w+)\)', s).group(1) for s in src if 'show_doc(' in s]
    assert docs == ['zeta', 'omega', 'helper', 'Box', 'alpha', 'folded']      # definitions' order, one call a cell
    for s, c in zip(src, cells):
        if 'show_doc(' in s:
            assert s.startswith('#| echo: false\n#| output: asis\n') and s.count('show_doc(') == 1
            assert len(c['outputs']) == 1 and '### ' in ''.join(c['outputs'][0]['data']['text/markdown'])
    assert 'assert alpha(3) == 3' in src and not any('assert alpha' in s and '#|' in s for s in src)
    box = next(''.join(c['outputs'][0]['data']['text/markdown']) for s, c in zip(src, cells) if 'show_doc(Box)' in s)
    assert '# across' in box and '# up' in box                               # a notebook dataclass's field comments
    assert any(s.startswith('#| code-fold: show\n#| code-summary: "Exported source"\ndef folded()') for s in src)
    assert (tiny / 'sidebar.yml').exists()


def test_site_from_nbdev_processing(tiny, tmp_path):
    _need_pandoc()
    out = tmp_path / 'site'
    _build('html', '--proc', str(tiny), '--out', str(out))
    page = (out / 'things.html').read_text()
    heads = re.findall(r'<h3 id="[^"]*">(.*?)</h3>', page)
    assert heads == ['zeta', 'omega', 'helper', 'Box', 'alpha', 'folded']
    text = _text(page)
    assert 'class="title">Tiny things' in page and 'A page of a throwaway project.' in page
    assert 'width:int=1, # across' in text and 'assert alpha(3) == 3' in text
    assert 'only the output' in text and 'print(' not in text and 'secret_setup' not in text and '#|' not in text
    assert '<details class="code-fold" open><summary>Exported source</summary>' in page


# ---------------------------------------------------------------------------------------------------- the real notebooks
@pytest.fixture(scope='session')
def proc():
    "The repository's notebooks processed by nbdev into _proc/ (only those changed since the last run)."
    pytest.importorskip('nbdev')
    _build('proc', timeout=1200)
    return ROOT / '_proc'


def _directive_lines(nb_file, directive):
    "Code lines that only `#| <directive>` cells hold."
    tagged, other = set(), set()
    for c in json.loads((NBS / nb_file).read_text())['cells']:
        if c['cell_type'] != 'code': continue
        src = ''.join(c['source'])
        lines = {l.strip() for l in src.splitlines() if len(l.strip()) > 12 and not l.lstrip().startswith('#|')}
        (tagged if re.search(rf'^#\|\s*{directive}\s*$', src, re.M) else other).update(lines)
    return tagged - other


def test_html_pages_of_the_notebooks(proc, tmp_path):
    _need_pandoc()
    out = tmp_path / 'site'
    _build('html', '--only', 'index,00_data', '--out', str(out), '--proc', str(proc))
    index, data = (out / 'index.html').read_text(), (out / 'data.html').read_text()
    for page in (index, data):
        assert '<nav class="sidebar"' in page and '<li class="part"><span>Data</span>' in page
        assert 'href="index.html"' in page and 'href="data.html"' in page
        assert 'site_libs/site.css' in page and '<nav id="TOC">' in page
        code = ' '.join(re.findall(r'<pre class="sourceCode python">(.*?)</pre>', page, re.S))
        assert '#|' not in re.sub(r'<[^>]+>', '', code)
        assert f'{SITE}/data.html' not in page and f'{SITE}/index.html' not in page   # links to built pages: relative
    assert '<pre class="sourceCode python">' in data and 'class="cell-output' in data
    assert 'rel="next"' in index and 'rel="prev"' in data
    assert 'class="title">Data' in data
    assert '#LNone' not in data and re.search(r'data\.py#L\d+', data)      # every source link has its line
    ids = {n: set(re.findall(r'\bid="([^"]+)"', p)) for n, p in (('index', index), ('data', data))}
    links = [(p or here, H.unescape(f)) for here, page in (('index', index), ('data', data))
             for p, f in re.findall(r'href="(?:(index|data)\.html)?#([^"]+)"', page)]
    assert ('data', 'idmap') in links and not [l for l in links if l[1] not in ids[l[0]]]   # every anchor exists
    for name in ('IdMap', 'IdMap.index', 'IdMap.extend', 'read_movielens_items', 'load_movielens'):   # one cell, 3 + 2 calls
        assert f'>{name}</h3>' in data, name
    text = _text(data)
    for line in _directive_lines('00_data.ipynb', 'hide'):
        assert line not in text, f'hidden code shown: {line}'
    assert (out / 'site_libs' / 'highlight.css').stat().st_size > 0
    assert not re.search(r'<(script|link)[^>]+(src|href)="https?://', data + index), 'a page loads from the network'


def test_pdf_book_of_two_chapters(proc, tmp_path):
    _need_pandoc()
    pytest.importorskip('typst', reason='typst (a dev requirement) is not installed')
    out = tmp_path / 'site'
    _build('pdf', '--only', 'index,00_data', '--out', str(out), '--cache', str(tmp_path / 'cache'), '--keep-typ', '--proc', str(proc))
    pdf = (out / 'recsys_nb.pdf').read_bytes()
    assert pdf.startswith(b'%PDF') and len(pdf) > 20_000
    typ = (out / 'recsys_nb.typ').read_text()
    assert '#outline(' in typ and '#part[Data]' in typ
    assert re.search(r'^= Data', typ, re.M) and '<data>' in typ        # the chapter and its label
    assert '#link(<data--idmap>)' in typ and f'{SITE}/data.html' not in typ
    assert '#|' not in typ


def test_readme_from_the_index_notebook(proc, tmp_path):
    dst = tmp_path / 'README.md'
    _build('readme', str(dst), '--proc', str(proc))
    text = dst.read_text()
    assert text.startswith(f"# {CFG['title']}\n")
    assert '#|' not in text and '.ipynb)' not in text and bd.NBDEV_WARNING not in text
    assert not re.search(r'\[`[^`]+`\]\(' + re.escape(SITE), text)       # names stay code, as the notebook has them
    nb = (NBS / 'index.ipynb').read_text()
    if '.ipynb' in nb: assert SITE in text


def test_every_chapter_of_the_sidebar_reads(proc):
    "Every notebook of the book goes through the page reader, with the title and description of its title cell."
    pages = bd.load_pages(proc, None, NBS)
    assert [p.entry.file for p in pages] == [e.file for e in bd.read_sidebar(NBS)] and all(p.cells for p in pages)
    assert not [w for p in pages for w in p.warnings], [w for p in pages for w in p.warnings]
    for p in pages:
        first = next(c for c in json.loads((NBS / p.entry.file).read_text())['cells'] if c['cell_type'] == 'markdown')
        title = re.search(r'^#\s+(.+?)\s*$', ''.join(first['source']), re.M).group(1)
        assert p.title == title and p.name == bd.page_name(p.entry.file), p.entry.file


def test_show_doc_calls_have_cells_of_their_own():
    "A cell shows its last output only (in Jupyter and in nbdev's processing): each `show_doc` call is a cell alone."
    crowded = [f'{nb.name} {c.get("id")}' for nb in sorted(NBS.glob('*.ipynb')) for c in json.loads(nb.read_text())['cells']
               if c['cell_type'] == 'code' and 'show_doc(' in ''.join(c['source'])
               and not re.search(r'^#\|\s*(hide|export)', ''.join(c['source']), re.M)
               and len([l for l in ''.join(c['source']).splitlines() if l.strip() and not l.startswith('#|')]) > 1
               and re.search(r'^show_doc\(', ''.join(c['source']), re.M)]
    assert not crowded, crowded


def test_every_show_doc_call_has_its_output(proc):
    "Each `show_doc(X)` of a notebook has its block in the processed notebook, whatever else its cell holds."
    missing = []
    for nb in sorted(NBS.glob('*.ipynb')):
        calls = [m.group(1) for c in json.loads(nb.read_text())['cells'] if c['cell_type'] == 'code'
                 and not re.search(r'^#\|\s*(hide|export)', ''.join(c['source']), re.M)
                 for m in re.finditer(r'^show_doc\(([\w.]+)\)', ''.join(c['source']), re.M)]
        shown = {m.group(1) for c in json.loads((proc / nb.name).read_text())['cells'] for o in c.get('outputs', [])
                 for m in re.finditer(r'^#+ (\S+)\s*$', ''.join(o.get('data', {}).get('text/markdown', '')), re.M)}
        missing += [f'{nb.name}: {c}' for c in calls if c not in shown]
    assert not missing, missing


def test_descriptions_are_one_line():
    "nbdev keeps only the first line of a `> description`: page subtitles and module docstrings would stop mid-sentence."
    for nb in sorted(NBS.glob('*.ipynb')):
        title = next(c for c in json.loads(nb.read_text())['cells'] if c['cell_type'] == 'markdown')
        quoted = [l for l in ''.join(title['source']).splitlines() if l.startswith('>')]
        assert len(quoted) <= 1, f'{nb.name}: the description spans {len(quoted)} lines'


# ---------------------------------------------------------------------------------------------------- the book's text
BLEMISHES = {'#LNone': 'a source link without a line', '/work/': 'a build-machine path', '/tmp/': 'a temporary path',
             '.venv': 'the build venv', 'Warning': 'a warning', 'Traceback': 'a traceback'}


def _outputs(cell) -> str:
    out = []
    for o in cell.get('outputs', []):
        if 'text' in o: out.append(''.join(o['text']))
        out += [''.join(v) for k, v in o.get('data', {}).items() if k in ('text/plain', 'text/html', 'text/markdown')]
    return '\n'.join(out)


def test_committed_outputs_carry_no_blemishes():
    "What the book prints: no source link without a line, no build paths, no warnings or tracebacks in any output."
    found = [f'{p.name} {c.get("id")}: {why}' for p in sorted(NBS.glob('*.ipynb')) for c in json.loads(p.read_text())['cells']
             for pat, why in BLEMISHES.items() if c['cell_type'] == 'code' and pat in _outputs(c)]
    assert not found, found



def test_no_setup_call_prints_its_return_value():
    "A cell ending in `setup_plotly()` ends it with `;`: the renderer's name it returns is not part of the book."
    found = [f'{p.name} {c.get("id")}' for p in sorted(NBS.glob('*.ipynb')) for c in json.loads(p.read_text())['cells']
             if c['cell_type'] == 'code' and ''.join(c['source']).strip().endswith('\nsetup_plotly()')]
    found += [f'{p.name} {c.get("id")}: output' for p in sorted(NBS.glob('*.ipynb')) for c in json.loads(p.read_text())['cells']
              for o in c.get('outputs', []) if ''.join(o.get('data', {}).get('text/plain', [])).strip("'") in
              ('notebook_connected', 'plotly_mimetype+notebook')]
    assert not found, found


def test_html_outputs_style_only_themselves():
    """Every CSS rule in an output's <style> starts with a class or id: a rule for `body` or an element would restyle
    the whole docs page (and the reader's notebook) around it."""
    found = []
    for p in sorted(NBS.glob('*.ipynb')):
        for c in json.loads(p.read_text())['cells']:
            if c['cell_type'] != 'code': continue
            for css in re.findall(r'<style[^>]*>(.*?)</style>', _outputs(c), re.S):
                found += [f'{p.name} {c.get("id")}: {s}' for s in css_selectors(css) if not s.startswith(('.', '#'))]
    assert not found, found


def test_tables_show_no_raw_nan_or_none():
    "A table cell the book shows is a value, a blank or a dash, never NaN or None (the cells marked slow included)."
    found = [f'{p.name} {c.get("id")}: {pat}' for p in sorted(NBS.glob('*.ipynb')) for c in json.loads(p.read_text())['cells']
             if c['cell_type'] == 'code'
             for pat in ('<td>NaN</td>', '<td>None</td>', '<td>nan</td>') if pat in _outputs(c)]
    assert not found, found

def test_display_math_has_no_line_markdown_reads_as_a_list():
    "A line inside $$…$$ that starts with '+ ', '- ' or '* ' becomes a bullet (raw $$ in HTML and PDF): end the line before with the operator instead."
    found = [f'{p.name} {c.get("id")}: {line.strip()[:60]}' for p in sorted(NBS.glob('*.ipynb'))
             for c in json.loads(p.read_text())['cells'] if c['cell_type'] == 'markdown'
             for m in re.finditer(r'\$\$(.+?)\$\$', ''.join(c['source']), re.S)
             for line in m.group(1).split('\n')[1:] if re.match(r'\s*([+*-]|\d+\.)\s', line)]
    assert not found, found


def test_every_nnx_module_has_a_signature_the_docs_can_read():
    "show_doc evaluates string annotations; Flax NNX's metaclass would give `*args: 'Any'` from Flax's own module and fail the Quarto route."
    import importlib, inspect
    from flax import nnx
    found = []
    for m in ('mf_jax', 'retrieval', 'spotify', 'stl_model'):
        mod = importlib.import_module(f'recsys_nb.{m}')
        for name, cls in vars(mod).items():
            if inspect.isclass(cls) and issubclass(cls, nnx.Module) and cls.__module__ == mod.__name__:
                found.append(name)
                assert 'args' not in inspect.signature(cls, eval_str=True).parameters, name
    assert {'JaxMF', 'TwoTowerModel', 'SpotifyModel', 'STLModel'} <= set(found)

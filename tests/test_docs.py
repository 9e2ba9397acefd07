"""The docs tooling (scripts/build_docs.py): a quick build of a few pages, the PDF of a few chapters, the README, the
Quarto book's chapter list. Runs in seconds; skips only where pandoc (pypandoc_binary) or typst is not installed."""
import importlib.util, json, re, subprocess, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / 'scripts' / 'build_docs.py'
NBS = ROOT / 'nbs'


def _load():
    spec = importlib.util.spec_from_file_location('build_docs', SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod          # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


bd = _load()


def _need_pandoc():
    pypandoc = pytest.importorskip('pypandoc', reason='pypandoc_binary (a dev requirement) is not installed')
    try: pypandoc.get_pandoc_path()
    except OSError: pytest.skip('pypandoc is installed without its pandoc binary: pip install pypandoc_binary')


def _build(*args, cwd=ROOT):
    r = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=cwd, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


# ---------------------------------------------------------------------------------------------------- pure functions
def test_page_names_follow_nbdev():
    assert bd.page_name('00_data.ipynb') == 'data'
    assert bd.page_name('01a_train.ipynb') == 'train'
    assert bd.page_name('index.ipynb') == 'index'
    assert bd.page_name('03_mf_jax.ipynb') == 'mf_jax'


def test_directives_are_parsed_and_stripped():
    dirs, code = bd.split_directives('#| hide\n#| eval: false\n\nx = 1\n#| not a directive here\n')
    assert dirs == {'hide': [], 'eval:': ['false']}
    assert code == 'x = 1\n#| not a directive here\n'
    assert bd.dir_is({'echo:': ['false']}, 'echo', 'false')


def test_progress_bars_collapse_to_their_last_state():
    raw = '\rep:   0%|          | 0/5\rep: 100%|##########| 5/5\n\x1b[31mred\x1b[0m\n'
    assert bd.clean_stream(raw) == 'ep: 100%|##########| 5/5\nred\n'


def test_title_cell_takes_title_and_whole_description():
    title, desc, rest = bd.title_cell('# The `x` command\n\n> One line,\n> and its continuation.\n\nMore text.')
    assert (title, desc, rest) == ('The `x` command', 'One line, and its continuation.', 'More text.')


def test_linkify_skips_code_blocks_and_existing_links():
    idx = {'read_ratings': 'data.html#read_ratings'}
    md = 'Use `read_ratings`, not [`read_ratings`](x.html).\n```python\n`read_ratings`\n```'
    out = bd.linkify(md, idx, 'cli')
    assert out.startswith('Use [`read_ratings`](data.html#read_ratings), not [`read_ratings`](x.html).')
    assert out.endswith('```python\n`read_ratings`\n```')
    assert bd.linkify('`read_ratings`', idx, 'data') == '[`read_ratings`](#read_ratings)'


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


# ---------------------------------------------------------------------------------------------------- builds
def _hidden_lines(nb_file):
    "Code lines that only `#| hide` cells hold (so they must not be on the page)."
    nb = json.loads((NBS / nb_file).read_text())
    hidden, shown = set(), set()
    for c in nb['cells']:
        if c['cell_type'] != 'code': continue
        dirs, code = bd.split_directives(bd.src_of(c))
        lines = {l.strip() for l in code.splitlines() if len(l.strip()) > 12}
        if {'export', 'exporti'} & dirs.keys() and 'hide' not in dirs: continue   # signatures show via show_doc
        (hidden if 'hide' in dirs else shown).update(lines)
    return hidden - shown


def test_html_pages_have_sidebar_code_and_no_hidden_cells(tmp_path):
    _need_pandoc()
    out = tmp_path / 'site'
    _build('html', '--only', 'index,00_data', '--out', str(out))
    index, data = (out / 'index.html').read_text(), (out / 'data.html').read_text()
    for page in (index, data):
        assert '<nav class="sidebar"' in page and '<li class="part"><span>Data</span>' in page
        assert 'href="index.html"' in page and 'href="data.html"' in page
        assert 'site_libs/site.css' in page and '<nav id="TOC">' in page
        code = ' '.join(re.findall(r'<pre class="sourceCode python">(.*?)</pre>', page, re.S))
        assert '#|' not in re.sub(r'<[^>]+>', '', code)
    assert '<pre class="sourceCode python">' in data and 'class="cell-output' in data
    assert 'rel="next"' in index and 'rel="prev"' in data
    assert 'class="title">Data' in data
    assert '#LNone' not in data and re.search(r'data\.py#L\d+', data)     # every source link has its line (inspect finds it)
    text = re.sub(r'<[^>]+>', '', data)
    import html as h
    text = h.unescape(text)
    for line in _hidden_lines('00_data.ipynb'):
        assert line not in text, f'hidden code shown: {line}'
    assert (out / 'site_libs' / 'highlight.css').stat().st_size > 0
    assert not re.search(r'<(script|link)[^>]+(src|href)="https?://', data + index), 'a page loads from the network'


def test_a_plotly_chart_is_interactive_offline(tmp_path):
    "A throwaway notebook with a plotly JSON output: the page draws it with the local plotly.js."
    _need_pandoc()
    pytest.importorskip('plotly')
    nbs = tmp_path / 'nbs'; nbs.mkdir()
    (nbs / 'sidebar.yml').write_text('website:\n  sidebar:\n    contents:\n      - index.ipynb\n'
                                     '      - section: Data\n        contents:\n          - 01_chart.ipynb\n')
    fig = {'data': [{'type': 'scatter', 'x': [1, 2, 3], 'y': [3, 1, 2]}], 'layout': {'title': {'text': 'RMSE'}}}
    cells = [{'cell_type': 'markdown', 'metadata': {}, 'source': '# A chart\n\n> With one figure.'},
             {'cell_type': 'code', 'metadata': {}, 'execution_count': 1, 'source': '#| hide\nsecret_setup = 1',
              'outputs': []},
             {'cell_type': 'code', 'metadata': {}, 'execution_count': 2, 'source': '#| echo: false\nfig.show()',
              'outputs': [{'output_type': 'display_data', 'metadata': {}, 'data': {bd.PLOTLY_MIME: fig}}]}]
    nb = {'cells': cells, 'metadata': {}, 'nbformat': 4, 'nbformat_minor': 5}
    for name in ('index.ipynb', '01_chart.ipynb'): (nbs / name).write_text(json.dumps(nb))
    out = tmp_path / 'site'
    _build('html', '--nbs', str(nbs), '--out', str(out), '--no-library')
    page = (out / 'chart.html').read_text()
    assert 'Plotly.newPlot("chart-fig-1"' in page and 'site_libs/plotly.min.js' in page
    assert (out / 'site_libs' / 'plotly.min.js').stat().st_size > 1_000_000
    assert 'secret_setup' not in page and 'fig.show()' not in page


def test_quarto_route_gives_plotly_charts_an_html_form(tmp_path):
    "What `quarto-site` does to nbdev's processed notebooks: Quarto cannot show plotly's JSON mime bundle."
    pytest.importorskip('plotly')
    fig = {'data': [{'type': 'bar', 'y': [1, 2]}], 'layout': {}}
    nb = {'cells': [{'cell_type': 'code', 'metadata': {}, 'source': 'fig', 'execution_count': 1, 'outputs': [
        {'output_type': 'display_data', 'metadata': {}, 'data': {bd.PLOTLY_MIME: fig}}]}], 'metadata': {},
          'nbformat': 4, 'nbformat_minor': 5}
    (tmp_path / 'chart.ipynb').write_text(json.dumps(nb))
    assert bd.plotly_to_html_in(tmp_path) == 1
    data = json.loads((tmp_path / 'chart.ipynb').read_text())['cells'][0]['outputs'][0]['data']
    assert bd.PLOTLY_MIME not in data and 'Plotly.newPlot(' in data['text/html']
    assert '<script src="plotly.min.js"' in data['text/html'] and (tmp_path / 'plotly.min.js').exists()


def test_book_sources_are_valid_quarto_notebooks(tmp_path):
    nbformat = pytest.importorskip('nbformat')
    _build('book-sources', str(tmp_path), '--only', 'index,90_cli', '--no-library')
    for f in ('index.ipynb', '90_cli.ipynb'):
        nb = nbformat.read(tmp_path / f, as_version=4)
        nbformat.validate(nb)
        assert nb.cells[0].source.startswith('# ')
        for c in nb.cells:
            if c.cell_type == 'code':
                assert all(l.split(':')[0].strip('#| ') in ('echo', 'output', 'code-fold', 'code-summary')
                           for l in c.source.splitlines() if l.startswith('#|')), c.source


def test_pdf_book_of_two_chapters(tmp_path):
    _need_pandoc()
    pytest.importorskip('typst', reason='typst (a dev requirement) is not installed')
    out = tmp_path / 'site'
    _build('pdf', '--only', 'index,00_data', '--out', str(out), '--cache', str(tmp_path / 'cache'), '--keep-typ')
    pdf = (out / 'recsys_nb.pdf').read_bytes()
    assert pdf.startswith(b'%PDF') and len(pdf) > 20_000
    typ = (out / 'recsys_nb.typ').read_text()
    assert '#outline(' in typ and '#part[Data]' in typ
    assert re.search(r'^= Data', typ, re.M) and '<data>' in typ        # the chapter and its label
    assert '#|' not in typ


def test_readme_from_the_index_notebook(tmp_path):
    dst = tmp_path / 'README.md'
    _build('readme', str(dst))
    text = dst.read_text()
    cfg = bd.read_settings()
    assert text.startswith(f"# {cfg['title']}\n")
    assert '#|' not in text and '.ipynb)' not in text
    site = cfg['doc_host'] + cfg['doc_baseurl']
    nb = (NBS / 'index.ipynb').read_text()
    if '.ipynb' in nb: assert site in text


def test_every_chapter_of_the_sidebar_reads():
    "Every notebook of the book goes through the page reader (a cell shape it did not expect once stopped `make docs`)."
    pages = bd.load_pages(NBS, None, bd.Library(False))
    assert len(pages) == len(bd.read_sidebar(NBS)) and all(p.cells for p in pages)
    assert not [w for p in pages for w in p.warnings], [w for p in pages for w in p.warnings]


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

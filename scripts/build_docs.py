#!/usr/bin/env python3
"""Build the recsys_nb docs from the notebooks' committed outputs, with registry packages only.

    python scripts/build_docs.py site      # HTML site in _docs/ + the PDF book _docs/recsys_nb.pdf (what `make docs` runs)
    python scripts/build_docs.py html      # the HTML site only
    python scripts/build_docs.py pdf       # the PDF book only
    python scripts/build_docs.py readme    # README.md from nbs/index.ipynb (what `make readme` runs)
    python scripts/build_docs.py book-sources [DIR]  # processed notebooks for the Quarto book (top-level _quarto.yml)
    python scripts/build_docs.py book-yml            # the book's chapter list in _quarto.yml from nbs/sidebar.yml
    python scripts/build_docs.py quarto-site         # where Quarto is installed: nbdev's processing + quarto render
    python scripts/build_docs.py quarto-book         # where Quarto is installed: the book PDF through Quarto

The notebooks are never executed: their committed outputs are the docs. The only code run is `show_doc` on the
exported library, for a documented name whose `show_doc` cell has no stored output, and for the public names of
`#| export` cells that no `show_doc` cell covers — what nbdev itself does when it builds docs (`--no-library` turns
it off). Notebooks are taken in the order of nbs/sidebar.yml, grouped by its sections; missing ones are skipped.

The cell rules follow nbdev 2: `#| hide`, `#| export`, `#| exporti`, `#| default_exp` and `#| include: false` cells are
not shown; `#| exports` cells show their code folded; `#| echo: false` / `#| hide_input` show only the output,
`#| output: false` / `#| hide_output` only the code; directive lines, `#|hide_line` lines and magics are stripped; the
first markdown cell with a `# Title` and `> description` becomes the page title.

Routes: pandoc (pypandoc_binary) turns each page into HTML (MathML for maths, plotly.js from the plotly package
for interactive charts, no network needed to read); the book is one pandoc document written as typst and compiled
by the `typst` package; plotly charts become PNGs through kaleido, which drives the installed Chromium.
"""
from __future__ import annotations

import argparse, ast, base64, concurrent.futures as cf, configparser, hashlib, html, importlib, inspect, json, os, re
import shutil, subprocess, sys, tempfile, time, warnings
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

ROOT = Path(__file__).resolve().parents[1]
ASSETS = Path(__file__).resolve().parent / 'docs'
PLOTLY_MIME = 'application/vnd.plotly.v1+json'
PDF_NAME = 'recsys_nb.pdf'


def log(*a):
    print('[docs]', *a, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------ configuration
def read_settings(root: Path = ROOT) -> dict:
    "settings.ini's [DEFAULT] section as a dict."
    cp = configparser.ConfigParser(delimiters=['='], interpolation=None)
    cp.read(root / 'settings.ini', encoding='utf-8')
    return dict(cp['DEFAULT'])


def page_name(nb_file: str) -> str:
    "The html page name nbdev gives a notebook: `00_data.ipynb` -> `data` (number prefix dropped, lower case)."
    return re.sub(r'^\d+[a-zA-Z0-9]*_', '', Path(nb_file).stem.lower())


@dataclass
class Entry:
    file: str            # notebook path relative to nbs/
    part: str | None     # sidebar section, None for top-level entries (index)


def read_sidebar(nbs: Path) -> list[Entry]:
    "The notebooks of nbs/sidebar.yml in order, each with its section (nested sections flatten to the outer one)."
    import yaml
    doc = yaml.safe_load((nbs / 'sidebar.yml').read_text(encoding='utf-8'))
    out: list[Entry] = []

    def walk(items, part):
        for it in items or []:
            if isinstance(it, str): out.append(Entry(it, part))
            elif isinstance(it, dict) and 'contents' in it: walk(it['contents'], part or it.get('section') or it.get('text'))
            elif isinstance(it, dict) and 'href' in it: out.append(Entry(it['href'], part))
    walk(doc['website']['sidebar']['contents'], None)
    return [e for e in out if e.file.endswith('.ipynb')]


# ------------------------------------------------------------------------------------------------ notebook cells
_re_dir = re.compile(r'^\s*#\s*\|')
_re_magic = re.compile(r'^\s*%%?\w')
_re_ansi = re.compile(r'\x1B(?:[@-Z\\-_]|\[[0-?]*[ -/]*[@-~])')
_re_hide_line = re.compile(r'#\|\s*hide_line\s*$')
_HIDDEN = {'hide', 'export', 'exporti', 'default_exp'}


def src_of(cell) -> str:
    s = cell.get('source', '')
    return ''.join(s) if isinstance(s, list) else s


def split_directives(src: str) -> tuple[dict, str]:
    "nbdev's directive parsing: leading `#|` lines -> {'hide': [], 'eval:': ['false'], ...}, and the code below them."
    lines = src.splitlines(True)
    i = 0
    while i < len(lines) and (not lines[i].strip() or _re_dir.match(lines[i])): i += 1
    dirs = {}
    for line in lines[:i]:
        if not _re_dir.match(line): continue
        s = _re_dir.sub('', line, count=1).strip()
        if s.endswith(':'): s = s[:-1]
        if ':' in s: s = s.replace(':', ': ', 1)
        parts = s.split()
        if not parts: continue
        dirs[parts[0]] = parts[1:]
    return dirs, ''.join(lines[i:])


def dir_is(dirs: dict, key: str, value: str) -> bool:
    return [v.lower() for v in dirs.get(key + ':', [])] == [value]


def clean_stream(text: str) -> str:
    "ANSI codes stripped, carriage-return updates (progress bars) collapsed to the state a terminal would show."
    text = _re_ansi.sub('', text)
    out = []
    for line in text.split('\n'):
        if '\r' in line:
            segs = [s for s in line.split('\r') if s]
            line = segs[-1] if segs else ''
        out.append(line)
    return '\n'.join(out)


@dataclass
class Output:
    kind: str                   # 'stream', 'error', 'data'
    name: str = ''              # stream name
    text: str = ''              # stream / error text
    data: dict = field(default_factory=dict)
    showdoc: bool = False


@dataclass
class Cell:
    kind: str                   # 'markdown' or 'code'
    text: str = ''              # markdown text, or code shown ('' = code hidden)
    outputs: list = field(default_factory=list)
    fold: bool = False          # `#| exports`: code folded under "Exported source"
    idx: int = 0                # index in the notebook (for file names)


@dataclass
class Page:
    entry: Entry
    path: Path
    name: str
    title: str
    description: str
    cells: list
    module: str | None
    documented: list = field(default_factory=list)   # names with a show_doc heading on this page
    warnings: list = field(default_factory=list)

    @property
    def has_plotly(self): return any(o.kind == 'data' and PLOTLY_MIME in o.data for c in self.cells for o in c.outputs)


def _join(v): return ''.join(v) if isinstance(v, list) else v


_re_newplot = re.compile(r'Plotly\.newPlot\(\s*')


def extract_plotly(h: str) -> list[dict]:
    "The figures of plotly's HTML output (`fig.show()` with a notebook renderer): the JSON args of `Plotly.newPlot`."
    figs, dec = [], json.JSONDecoder()
    for m in _re_newplot.finditer(h):
        pos, args = m.end(), []
        try:
            for _ in range(4):
                val, pos = dec.raw_decode(h, pos)
                args.append(val)
                while pos < len(h) and h[pos] in ' \n\t\r': pos += 1
                if pos < len(h) and h[pos] == ',':
                    pos += 1
                    while pos < len(h) and h[pos] in ' \n\t\r': pos += 1
                else: break
        except ValueError: pass
        if len(args) >= 2 and isinstance(args[1], list):
            figs.append({'data': args[1], 'layout': args[2] if len(args) > 2 and isinstance(args[2], dict) else {},
                         **({'config': args[3]} if len(args) > 3 and isinstance(args[3], dict) else {})})
    return figs


def normalise_plotly(data: dict) -> list[dict]:
    "One output's data as plotly JSON bundles if it is a plotly chart in HTML form; [] for plotly.js loader boilerplate."
    h = data.get('text/html', '')
    if PLOTLY_MIME in data or 'plotly' not in h.lower(): return [data]
    if 'plotly-graph-div' in h:
        figs = extract_plotly(h)
        if figs: return [{PLOTLY_MIME: f} for f in figs]
        return [data]
    if re.search(r'cdn\.plot\.ly|require\.config|PlotlyConfig', h) and not re.sub(r'<script.*?</script>', '', h, flags=re.S).strip():
        return []          # only loads plotly.js (from a CDN): the site ships its own copy
    return [data]


def read_outputs(cell) -> list[Output]:
    res: list[Output] = []
    for o in cell.get('outputs', []):
        t = o.get('output_type')
        if t == 'stream':
            txt = _join(o.get('text', ''))
            if res and res[-1].kind == 'stream' and res[-1].name == o.get('name'): res[-1].text += txt
            else: res.append(Output('stream', name=o.get('name', 'stdout'), text=txt))
        elif t == 'error':
            tb = '\n'.join(o.get('traceback', [])) or f"{o.get('ename')}: {o.get('evalue')}"
            res.append(Output('error', text=_re_ansi.sub('', tb)))
        elif t in ('execute_result', 'display_data'):
            data = {k: (_join(v) if k.startswith('text/') or k == 'image/svg+xml' else v) for k, v in o.get('data', {}).items()}
            res += [Output('data', data=d) for d in normalise_plotly(data)]
    for r in res:
        if r.kind == 'stream': r.text = clean_stream(r.text).rstrip('\n')
    return [r for r in res if not (r.kind == 'stream' and not r.text.strip())]


_re_h1 = re.compile(r'^#\s+(\S.*?)\s*$', re.M)
_re_desc = re.compile(r'^>\s?(.*?)\s*$', re.M)
_re_showdoc_call = re.compile(r'^show_doc\((.+)\)\s*$', re.M)
_re_showdoc_head = re.compile(r'^#{2,4}\s+(\S+)\s*$', re.M)


def title_cell(text: str):
    "nbdev's formatted-markdown front matter: `# Title`, then `> description` (continuation lines joined)."
    m = _re_h1.search(text)
    if not m: return None
    title = m.group(1)
    lines = (text[:m.start()] + text[m.end():]).splitlines()
    q = next((i for i, l in enumerate(lines) if l.startswith('>')), None)
    desc_lines = []
    if q is not None:
        j = q
        while j < len(lines) and lines[j].startswith('>'): desc_lines.append(lines[j][1:].strip()); j += 1
        lines = lines[:q] + lines[j:]
    other = [l for l in lines if not re.match(r'^-\s+\S.*:.*\S\s*$', l)]   # `- key: value` front matter lines
    return title, ' '.join(d for d in desc_lines if d), '\n'.join(other).strip()


def public_defs(code: str) -> list[str]:
    "Top-level public function and class names defined in `code` (what nbdev documents automatically)."
    try: tree = ast.parse(code)
    except SyntaxError: return []
    return [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            and (not n.name.startswith('_') or n.name.startswith('__'))]


class Library:
    "`show_doc` on the exported package, for show_doc cells without a stored output (nbdev re-runs them too)."
    def __init__(self, enabled: bool): self.enabled, self.mods, self.failed = enabled, {}, set()

    def ns(self, module: str | None):
        if not self.enabled or not module: return None
        if module in self.failed: return None
        if module not in self.mods:
            try:
                cfg = read_settings()
                if str(ROOT) not in sys.path: sys.path.insert(0, str(ROOT))
                from nbdev.showdoc import show_doc
                mod = importlib.import_module(f"{cfg.get('lib_name', 'recsys_nb')}.{module}")
                if 'flax' in sys.modules:   # flax.nnx's metaclass annotates `Any` that its module never imports,
                    import typing           # so inspect.signature(an nnx.Module subclass) raises NameError
                    pl = sys.modules.get('flax.nnx.pytreelib')
                    if pl is not None and not hasattr(pl, 'Any'): pl.Any = typing.Any
                ns = dict(vars(mod)); ns['show_doc'] = show_doc
                self.mods[module] = ns
            except Exception as e:                     # the module may not exist yet, or not import here
                log(f'show_doc: cannot import the module {module!r} ({type(e).__name__}: {e}); its docs stay as stored')
                self.failed.add(module); return None
        return self.mods[module]

    @staticmethod
    def source_line(md: str, obj) -> str:
        """The line of the source link: nbdev looks it up by the bare name, so an object imported from the package
        (not defined in a notebook kernel) gets `#LNone`; `inspect` finds the line, and without one the link goes."""
        if '#LNone' not in md: return md
        try: line = inspect.getsourcelines(inspect.unwrap(obj))[1]
        except (TypeError, OSError): line = None
        if line: return md.replace('#LNone', f'#L{line}')
        return re.sub(r'\[source\]\([^)]*#LNone\)(\{[^}]*\})?\n*', '', md)

    def render(self, module: str | None, expr: str) -> str | None:
        ns = self.ns(module)
        if ns is None: return None
        cwd = os.getcwd()
        try:
            os.chdir(ROOT)
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')
                r = eval(f'show_doc({expr})', ns)
            md = r._repr_markdown_() if r is not None and hasattr(r, '_repr_markdown_') else None
            return self.source_line(md, eval(expr, ns)) if md else md
        except Exception as e:
            log(f'show_doc({expr}) in {module}: {type(e).__name__}: {e}')
            return None
        finally: os.chdir(cwd)


def read_page(entry: Entry, nbs: Path, lib: Library) -> Page:
    "Read one notebook and apply nbdev's display rules."
    path = nbs / entry.file
    nb = json.loads(path.read_text(encoding='utf-8'))
    title, desc, cells, warns = None, '', [], []
    module = None
    fm = {}
    raw_cells = nb.get('cells', [])
    shown = {m.group(1).strip() for c in raw_cells if c.get('cell_type') == 'code'
             for m in _re_showdoc_call.finditer(src_of(c))}
    for i, c in enumerate(raw_cells):
        src = src_of(c)
        ct = c.get('cell_type')
        if ct == 'raw':
            m = re.match(r'^\s*---\s*\n(.*?)\n---\s*$', src, re.S)
            if m:
                import yaml
                try: fm.update(yaml.safe_load(m.group(1)) or {})
                except Exception as e: warns.append(f'front matter: {e}')
            continue
        if ct == 'markdown':
            if title is None and 'title' not in fm:
                tc = title_cell(src)
                if tc:
                    title, desc, rest = tc
                    if rest:
                        warns.append('the title cell holds more than `# Title` and `> description`; nbdev/Quarto '
                                      'drop the rest, this build keeps it')
                        cells.append(Cell('markdown', rest, idx=i))
                    continue
            src = src.strip()
            if src.startswith('#') and src.endswith(' -') and '\n' not in src: continue    # nbdev's rm_header_dash
            if src: cells.append(Cell('markdown', src, idx=i))
            continue
        if ct != 'code': continue
        dirs, code = split_directives(src)
        if 'default_exp' in dirs and dirs['default_exp']: module = dirs['default_exp'][0]
        outputs = read_outputs(c)
        if _HIDDEN & dirs.keys() or dir_is(dirs, 'include', 'false'):
            if 'hide' not in dirs and {'export', 'exporti'} & dirs.keys():
                # nbdev documents the public names of exported code that no show_doc cell covers
                for nm in public_defs(code):
                    if nm in shown: continue
                    md = lib.render(module, nm)
                    if md: cells.append(Cell('code', '', [Output('data', data={'text/markdown': md}, showdoc=True)], idx=i))
            continue
        code = '\n'.join(l for l in code.splitlines() if not _re_hide_line.search(l) and not _re_magic.match(l)).strip('\n')
        is_showdoc = bool(re.match(r'^\s*show_doc\(', code)) and all(
            _re_showdoc_call.match(l.strip()) for l in code.splitlines() if l.strip())
        if is_showdoc:
            mds = [o for o in outputs if o.kind == 'data' and 'text/markdown' in o.data]
            calls = [m.group(1).strip() for m in _re_showdoc_call.finditer(code)]
            if len(mds) < len(calls):                  # not executed (or partly): render from the library
                fresh = [lib.render(module, e) for e in calls]
                if all(fresh): mds = [Output('data', data={'text/markdown': f}) for f in fresh]
                elif not mds: warns.append(f'cell {i}: show_doc({", ".join(calls)}) has no stored output')
            for o in mds: o.showdoc = True
            if mds: cells.append(Cell('code', '', mds, idx=i))
            continue
        if dir_is(dirs, 'echo', 'false') or 'hide_input' in dirs: code = ''
        if dir_is(dirs, 'output', 'false') or 'hide_output' in dirs: outputs = []
        if not code.strip() and not outputs: continue
        cells.append(Cell('code', code, outputs, fold='exports' in dirs, idx=i))
    title = fm.get('title', title) or page_name(entry.file)
    desc = fm.get('description', desc) or ''
    p = Page(entry, path, page_name(entry.file), title, desc, cells, module, warnings=warns)
    p.documented = [m.group(1) for c in cells for o in c.outputs if o.showdoc
                    for m in _re_showdoc_head.finditer(o.data.get('text/markdown', ''))]
    return p


# ------------------------------------------------------------------------------------------------ markdown
def fence(text: str, ch='`', info='') -> str:
    n = max([3] + [len(m) + 1 for m in re.findall(re.escape(ch) + '{3,}', text)])
    return f"{ch * n}{info}\n{text}\n{ch * n}"


def div(classes: str, body: str) -> str:
    n = max([3] + [len(m) + 1 for m in re.findall(r'^:{3,}', body, re.M)])
    return f"{':' * n} {{{classes}}}\n{body}\n{':' * n}"


_re_code_fence = re.compile(r'^(`{3,}|~{3,}).*?^\1\s*$', re.M | re.S)
_re_tick = re.compile(r'(?<![\[`\w])`([A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)*)`(?![`\]])')


def linkify(md: str, index: dict, here: str) -> str:
    "Backticked documented names become links to their docs (nbdev's add_links), outside code blocks."
    if not index: return md
    def sub(m):
        url = index.get(m.group(1))
        if not url: return m.group(0)
        page, frag = url.split('#', 1)
        return f"[`{m.group(1)}`]({'#' + frag if page == here + '.html' else url})"
    def prose(text):   # not in headings: a link there would nest inside the table of contents' link
        return ''.join(l if l.lstrip().startswith('#') else _re_tick.sub(sub, l) for l in text.splitlines(True))
    parts, pos = [], 0
    for m in _re_code_fence.finditer(md):
        parts.append(prose(md[pos:m.start()])); parts.append(m.group(0)); pos = m.end()
    parts.append(prose(md[pos:]))
    return ''.join(parts)


def doc_index(pages: list[Page], lib_name: str) -> dict:
    "documented name -> 'page.html#anchor' (the anchors pandoc/Quarto give `### name` headings)."
    idx = {}
    for p in pages:
        mod = f'{lib_name}.{p.module}' if p.module else None
        for nm in p.documented:
            url = f'{p.name}.html#{nm.lower()}'
            idx.setdefault(nm, url)
            if mod: idx.setdefault(f'{mod}.{nm}', url)
    return idx


def plotly_div(fig: dict, div_id: str) -> str:
    "A plotly chart from its JSON mime bundle; needs plotly.js loaded in the page."
    layout = fig.get('layout', {}) or {}
    height = layout.get('height') or 500
    cfg = {'responsive': True, 'displaylogo': False, **(fig.get('config') or {})}
    js = lambda o: json.dumps(o, separators=(',', ':')).replace('</', '<\\/')
    return (f'<div id="{div_id}" class="plotly-graph-div" style="height:{height}px; width:100%;"></div>\n'
            f'<script type="text/javascript">Plotly.newPlot("{div_id}", {js(fig.get("data", []))}, '
            f'{js(layout)}, {js(cfg)});</script>')


_re_cdn = re.compile(r'<script[^>]*src="https://cdn\.plot\.ly/[^"]*"[^>]*>\s*</script>', re.I)


class Writer:
    "Markdown for pandoc, for the HTML pages ('html') or the book ('book')."
    def __init__(self, mode: str, figdir: Path, figrel: str, static_png=None, index=None, site_url='', snap_html=None):
        self.mode, self.figdir, self.figrel, self.static_png, self.index, self.site = mode, figdir, figrel, static_png, index or {}, site_url
        self.snap_html = snap_html
        self.nfig = 0

    def image(self, page: Page, cell: Cell, data: bytes, ext: str, full_width=False) -> str:
        self.figdir.mkdir(parents=True, exist_ok=True)
        self.nfig += 1
        fn = f'{page.name}-{cell.idx}-{self.nfig}.{ext}'
        (self.figdir / fn).write_bytes(data)
        if self.mode != 'book': return f'![]({self.figrel}/{fn})'
        width = '100%'
        if not full_width and ext in ('png', 'jpg'):   # a notebook's own image: its size at 96 dpi, at most the text width
            try:
                from PIL import Image
                import io
                pt = Image.open(io.BytesIO(data)).width * 0.75
                if pt < 450: width = f'{pt:.0f}pt'
            except Exception: pass
        return f'![]({self.figrel}/{fn}){{width={width}}}'

    def output(self, page: Page, cell: Cell, o: Output) -> str:
        if o.kind == 'stream':
            return div(f'.cell-output .cell-output-{"stderr" if o.name == "stderr" else "stdout"}', fence(o.text))
        if o.kind == 'error':
            return div('.cell-output .cell-output-error', fence(o.text))
        d = o.data
        if o.showdoc or ('text/markdown' in d and not ({PLOTLY_MIME, 'text/html'} & d.keys())):
            return div('.cell-output .cell-output-markdown', linkify(d['text/markdown'], self.index, page.name))
        if PLOTLY_MIME in d:
            if self.mode == 'html':
                self.nfig += 1
                return div('.cell-output .cell-output-display', fence(plotly_div(d[PLOTLY_MIME], f'{page.name}-fig-{self.nfig}'), info='{=html}'))
            png = self.static_png(d[PLOTLY_MIME]) if self.static_png else None
            if png: return div('.cell-output .cell-output-display', self.image(page, cell, png, 'png', full_width=True))
            url = f'{self.site}/{page.name}.html' if self.site else f'{page.name}.html'
            return div('.cell-output .cell-output-display', f'*(An interactive chart: see the web page, <{url}>.)*')
        for mime, ext in (('image/png', 'png'), ('image/jpeg', 'jpg')):
            if mime in d and (self.mode == 'book' or 'text/html' not in d):
                return div('.cell-output .cell-output-display', self.image(page, cell, base64.b64decode(d[mime]), ext))
        if 'text/html' in d:
            h = d['text/html']
            if self.mode == 'html':
                h = _re_cdn.sub('', h)
                return div('.cell-output .cell-output-display', fence(h, info='{=html}'))
            if '<table' in h and '<script' not in h and '<img' not in h:
                return div('.cell-output .cell-output-display', fence(h, info='{=html}'))
            if '<script' not in h and self.snap_html and not ({'image/png', 'image/jpeg'} & d.keys()):
                png = self.snap_html(h)
                if png: return div('.cell-output .cell-output-display', self.image(page, cell, png, 'png'))
        if 'image/svg+xml' in d:
            if self.mode == 'html': return div('.cell-output .cell-output-display', fence(d['image/svg+xml'], info='{=html}'))
            return div('.cell-output .cell-output-display', self.image(page, cell, d['image/svg+xml'].encode(), 'svg'))
        if 'text/latex' in d:
            return div('.cell-output .cell-output-display', d['text/latex'])
        if 'text/markdown' in d:
            return div('.cell-output .cell-output-markdown', linkify(d['text/markdown'], self.index, page.name))
        if 'text/plain' in d:
            return div('.cell-output .cell-output-stdout', fence(d['text/plain']))
        return ''

    def cell(self, page: Page, cell: Cell) -> str:
        if cell.kind == 'markdown': return linkify(cell.text, self.index, page.name)
        parts = []
        if cell.text:
            code = fence(cell.text, info='python')
            if cell.fold and self.mode == 'html':
                code = f'```{{=html}}\n<details class="code-fold"><summary>Exported source</summary>\n```\n\n{code}\n\n```{{=html}}\n</details>\n```'
            parts.append(code)
        parts += [s for s in (self.output(page, cell, o) for o in cell.outputs) if s]
        if not parts: return ''
        return div('.cell', '\n\n'.join(parts))

    def body(self, page: Page) -> str:
        return '\n\n'.join(s for s in (self.cell(page, c) for c in page.cells) if s) + '\n'


# ------------------------------------------------------------------------------------------------ pandoc
def pandoc_path() -> str:
    try:
        import pypandoc
        return pypandoc.get_pandoc_path()
    except Exception:
        p = shutil.which('pandoc')
        if p: return p
        raise SystemExit('pandoc not found: pip install pypandoc_binary (a dev requirement)')


def run_pandoc(args: list[str], text: str) -> str:
    r = subprocess.run([pandoc_path(), '-f', 'commonmark_x-gfm_auto_identifiers', *args], input=text,
                       capture_output=True, text=True)
    if r.returncode: raise RuntimeError(f'pandoc failed ({r.returncode}):\n{r.stderr}')
    for line in r.stderr.splitlines():
        if line.strip(): log('pandoc:', line)
    return r.stdout


def meta_file(tmp: Path, mode: str, pages: dict, site: str) -> Path:
    p = tmp / f'meta-{mode}.json'
    p.write_text(json.dumps({'docs-mode': mode, 'docs-pages': pages, 'docs-site': site}))
    return p


# ------------------------------------------------------------------------------------------------ HTML site
def sidebar_html(pages: list[Page], current: str, git_url: str, pdf: bool) -> str:
    out, part = ['<ul>'], None
    for p in pages:
        if p.entry.part != part:
            if part is not None: out.append('</ul></li>')
            part = p.entry.part
            if part is not None: out.append(f'<li class="part"><span>{html.escape(part)}</span><ul>')
        cls = ' class="active" aria-current="page"' if p.name == current else ''
        out.append(f'<li><a href="{p.name}.html"{cls}>{inline_html(p.title)}</a></li>')
    if part is not None: out.append('</ul></li>')
    out.append('</ul>')
    foot = [f'<a href="{PDF_NAME}">The whole book as a PDF</a>'] if pdf else []
    foot.append(f'<a href="{html.escape(git_url)}">Source on GitHub</a>')
    out.append('<div class="sidebar-foot">' + ''.join(foot) + '</div>')
    return '\n'.join(out)


def inline_html(md: str) -> str:
    "A title's inline markdown (backticks only) as HTML."
    return re.sub(r'`([^`]+)`', lambda m: f'<code>{m.group(1)}</code>', html.escape(md, quote=False))


def pager_html(pages: list[Page], i: int) -> str:
    out = []
    if i > 0:
        p = pages[i - 1]; out.append(f'<a class="prev" href="{p.name}.html" rel="prev"><small>← Previous</small>{inline_html(p.title)}</a>')
    if i + 1 < len(pages):
        p = pages[i + 1]; out.append(f'<a class="next" href="{p.name}.html" rel="next"><small>Next →</small>{inline_html(p.title)}</a>')
    return '\n'.join(out)


_MINI_TEMPLATE = '$if(toc)$<nav id="TOC"><h2>On this page</h2>\n$table-of-contents$\n</nav>$endif$\n<!--@@BODY@@-->\n$body$\n<!--@@CSS@@-->\n$highlighting-css$\n'
_REQUIRE_SHIM = ('<script>window.require = window.require || function (deps, cb) { if (cb) cb(window.Plotly); };'
                 ' window.define = window.define || undefined;</script>')


def build_html(pages: list[Page], out: Path, cfg: dict, tmp: Path, pdf: bool, jobs: int = 2) -> list[Path]:
    "One HTML page per notebook into `out`, plus site_libs/ (css, plotly.js)."
    libs = out / 'site_libs'; libs.mkdir(parents=True, exist_ok=True)
    shutil.copy(ASSETS / 'site.css', libs / 'site.css')
    styles = ROOT / cfg.get('nbs_path', 'nbs') / 'styles.css'
    (libs / 'styles.css').write_text(styles.read_text(encoding='utf-8') if styles.exists() else '', encoding='utf-8')
    if any(p.has_plotly or 'plotly' in json.dumps([o.data.get('text/html', '') for c in p.cells for o in c.outputs])
           for p in pages):
        import plotly
        shutil.copy(Path(plotly.__file__).parent / 'package_data' / 'plotly.min.js', libs / 'plotly.min.js')
    tpl = tmp / 'mini.html'; tpl.write_text(_MINI_TEMPLATE)
    page_tpl = Template((ASSETS / 'page.html').read_text(encoding='utf-8'))
    site = cfg.get('doc_host', '') + cfg.get('doc_baseurl', '')
    meta = meta_file(tmp, 'html', {p.entry.file: p.name for p in pages}, site)
    index = doc_index(pages, cfg.get('lib_name', 'recsys_nb'))
    figdir = out / 'figures'
    try:
        import pypandoc
        pv = pypandoc.get_pandoc_version()
    except Exception: pv = ''
    git_url = cfg.get('git_url', '')

    def one(i: int) -> Path:
        p = pages[i]
        md = Writer('html', figdir, 'figures', index=index, site_url=site).body(p)
        res = run_pandoc(['-t', 'html5', '--mathml', '--toc', '--toc-depth=3', f'--template={tpl}',
                          '--syntax-highlighting=pygments', '--wrap=none', f'--lua-filter={ASSETS / "filter.lua"}',
                          f'--metadata-file={meta}', '-M', f'pagetitle={p.title}'], md)
        toc, rest = res.split('<!--@@BODY@@-->', 1)
        body, css = rest.split('<!--@@CSS@@-->', 1)
        if i == 0 or not (libs / 'highlight.css').exists(): (libs / 'highlight.css').write_text(css.strip() + '\n')
        uses_plotly = 'Plotly.' in body or 'plotly-graph-div' in body
        head = ''
        if uses_plotly: head = _REQUIRE_SHIM + '\n<script src="site_libs/plotly.min.js" charset="utf-8"></script>'
        desc = f'<div class="description">{inline_html(p.description)}</div>' if p.description else ''
        src_url = f"{git_url}/blob/{cfg.get('branch', 'main')}/{cfg.get('nbs_path', 'nbs')}/{p.entry.file}"
        page = page_tpl.substitute(
            pandoc_version=pv, meta_description=html.escape(p.description or cfg.get('description', '')),
            page_title=html.escape(re.sub('`', '', p.title)), site_title=html.escape(cfg.get('title', 'docs')),
            site_description=html.escape(cfg.get('description', '')), git_url=html.escape(git_url),
            pdf_href=PDF_NAME, head_extra=head, sidebar=sidebar_html(pages, p.name, git_url, pdf),
            title_html=inline_html(p.title), description_html=desc, body=body, pager=pager_html(pages, i),
            footer=f'This page is the notebook <a href="{html.escape(src_url)}"><code>{cfg.get("nbs_path", "nbs")}/{p.entry.file}</code></a> '
                   f'with its committed outputs. {html.escape(cfg.get("copyright", ""))}',
            toc=toc if '<li>' in toc else '', toc_class='toc' if '<li>' in toc else 'toc toc-empty')
        dst = out / f'{p.name}.html'
        dst.write_text(page, encoding='utf-8')
        return dst

    with cf.ThreadPoolExecutor(max(1, jobs)) as ex:
        return list(ex.map(one, range(len(pages))))


# ------------------------------------------------------------------------------------------------ static charts
class StaticCharts:
    "PNGs of plotly figures through kaleido (which drives the installed Chromium), cached by figure content."
    def __init__(self, cache: Path, width=900, scale=2):
        self.cache, self.width, self.scale = cache / 'charts', width, scale
        self.failed = False

    def key(self, fig: dict) -> str:
        return hashlib.sha1(json.dumps([fig, self.width, self.scale], sort_keys=True).encode()).hexdigest()[:20]

    def prepare(self, figs: list[dict]):
        "Render every figure not in the cache, in one browser session."
        todo = {self.key(f): f for f in figs if not (self.cache / f'{self.key(f)}.png').exists()}
        if not todo: return
        self.cache.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        try:
            import plotly.io as pio
            keys = list(todo)
            figs_ = [dict(data=todo[k].get('data', []), layout=todo[k].get('layout', {})) for k in keys]
            heights = [int((f['layout'] or {}).get('height') or 450) for f in figs_]
            widths = [int((f['layout'] or {}).get('width') or self.width) for f in figs_]
            pio.write_images(figs_, [str(self.cache / f'{k}.png') for k in keys], format='png',
                             width=widths, height=heights, scale=self.scale, validate=False)
            log(f'{len(keys)} chart(s) rendered to PNG with kaleido in {time.time() - t0:.1f}s')
        except Exception as e:
            self.failed = True
            log(f'static charts failed ({type(e).__name__}: {str(e).strip()[:300]}); the PDF links to the web page instead.'
                ' Kaleido needs Chromium: apt-get install chromium (make docs does it).')

    def __call__(self, fig: dict) -> bytes | None:
        p = self.cache / f'{self.key(fig)}.png'
        return p.read_bytes() if p.exists() else None


class HtmlSnapshots:
    "PNGs of HTML outputs that have no PDF form (image grids, styled previews): headless Chromium, cropped, cached."
    CSS = ('<style>body{margin:0;padding:8px;font-family:"DejaVu Sans",sans-serif;font-size:14px;background:#fff}'
           'table{border-collapse:collapse}td,th{padding:3px 6px}</style>')

    def __init__(self, cache: Path, width=900):
        self.cache, self.width, self.failed = cache / 'html', width, False

    def key(self, h: str) -> str: return hashlib.sha1(f'{self.width}:{h}'.encode()).hexdigest()[:20]

    def __call__(self, h: str) -> bytes | None:
        p = self.cache / f'{self.key(h)}.png'
        if p.exists(): return p.read_bytes()
        browser = next((shutil.which(n) for n in ('chromium', 'chromium-browser', 'google-chrome') if shutil.which(n)), None)
        if self.failed or not browser: return None
        self.cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix='html-snap-') as tmp:
            page = Path(tmp) / 'out.html'
            page.write_text(f'<!DOCTYPE html><html><head><meta charset="utf-8">{self.CSS}</head><body>{h}</body></html>',
                            encoding='utf-8')
            shot = Path(tmp) / 'shot.png'
            flags = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
                     '--disable-component-update', '--disable-sync', '--hide-scrollbars', f'--user-data-dir={tmp}/profile',
                     f'--window-size={self.width},4000', '--virtual-time-budget=3000', f'--screenshot={shot}', page.as_uri()]
            try: subprocess.run([browser, *flags], capture_output=True, timeout=60)
            except Exception as e: log(f'HTML snapshot failed: {e}')
            if not shot.exists(): self.failed = True; return None
            from PIL import Image, ImageChops
            im = Image.open(shot).convert('RGB')
            bbox = ImageChops.difference(im, Image.new('RGB', im.size, (255, 255, 255))).getbbox()
            if not bbox: return None
            im.crop((0, 0, min(im.width, bbox[2] + 8), min(im.height, bbox[3] + 8))).save(p)
        return p.read_bytes()


# ------------------------------------------------------------------------------------------------ PDF book
def book_markdown(pages: list[Page], writer: Writer, cfg: dict) -> str:
    parts, part = [], object()
    for p in pages:
        if p.entry.part != part:
            part = p.entry.part
            if part: parts.append(fence(f'#part[{typst_text(part)}]', info='{=typst}'))
        unnumbered = p.entry.part is None
        title = p.title
        if unnumbered and title == cfg.get('title'): title = 'Introduction'
        head = f"# {title}{' {.unnumbered}' if unnumbered else ''}"
        desc = f'\n\n*{p.description}*' if p.description else ''
        parts.append(div(f'.chapter page="{p.name}"', head + desc + '\n\n' + writer.body(p)))
    return '\n\n'.join(parts) + '\n'


def typst_text(s: str) -> str:
    return re.sub(r'([\\#\[\]*_`$<>@=/~])', r'\\\1', s)


_re_math = re.compile(r'(?<!\\)\$(.*?)(?<!\\)\$', re.S)
_TYPST_RENAMES = [(re.compile(r'\bsect\b'), 'inter'),                    # pandoc 3.9 writes names typst 0.14+ renamed
                  (re.compile(r'\b(dot|times|plus|minus|div|ast|star|eq)\.circle\b'), r'\1.o')]


def typst_compat(typ: str) -> str:
    "Rename, inside maths, the symbols pandoc still writes by their pre-0.14 typst names."
    def fix(m):
        s = m.group(0)
        for r, new in _TYPST_RENAMES: s = r.sub(new, s)
        return s
    return _re_math.sub(fix, typ)


def typst_compile(src: Path, out: Path, root: Path, tries: int = 30):
    "Compile; a formula typst rejects is shown as its source text (with a warning) rather than failing the book."
    import typst
    for _ in range(tries):
        try:
            typst.compile(str(src), output=str(out), root=str(root)); return
        except typst.TypstError as e:
            diag = getattr(e, 'diagnostic', '') or str(e)
            m = re.search(r'─ ([^\n]*?):(\d+):(\d+)', diag)
            if not m: raise RuntimeError(diag) from None
            line, col = int(m.group(2)), int(m.group(3))
            lines = src.read_text(encoding='utf-8').split('\n')
            text = lines[line - 1]
            spans = [s for s in _re_math.finditer(text) if s.start() < col <= s.end()]
            if not spans: raise RuntimeError(diag) from None
            s = spans[0]
            log(f'PDF: typst rejects a formula ({getattr(e, "message", e)}), shown as text: {s.group(0)[:120]}')
            lines[line - 1] = text[:s.start()] + '#raw(' + json.dumps(s.group(1).strip()) + ')' + text[s.end():]
            src.write_text('\n'.join(lines), encoding='utf-8')
    raise RuntimeError(f'typst: too many errors in {src}')


def build_pdf(pages: list[Page], out_pdf: Path, cfg: dict, tmp: Path, cache: Path, keep_typ: Path | None = None) -> Path:
    "The whole book as one typst document (pandoc), compiled by the typst package."
    try: import typst
    except ImportError: raise SystemExit('typst not found: pip install typst (a dev requirement)')
    figs = [o.data[PLOTLY_MIME] for p in pages for c in p.cells for o in c.outputs if o.kind == 'data' and PLOTLY_MIME in o.data]
    charts = StaticCharts(cache)
    if figs: charts.prepare(figs)
    work = tmp / 'book'; work.mkdir(parents=True, exist_ok=True)
    site = cfg.get('doc_host', '') + cfg.get('doc_baseurl', '')
    index = doc_index(pages, cfg.get('lib_name', 'recsys_nb'))
    writer = Writer('book', work / 'figures', 'figures', static_png=charts, index=index, site_url=site,
                    snap_html=HtmlSnapshots(cache))
    md = book_markdown(pages, writer, cfg)
    meta = meta_file(tmp, 'book', {p.entry.file: p.name for p in pages}, site)
    clean = lambda s: (s or '').replace('"', "'").replace('\\', '/')
    t0 = time.time()
    typ = run_pandoc(['-t', 'typst', f'--template={ASSETS / "book.typst"}', f'--lua-filter={ASSETS / "filter.lua"}',
                      f'--metadata-file={meta}', '--wrap=none',
                      '-M', f"title={cfg.get('title', 'Book')}", '-M', f"subtitle={cfg.get('description', '')}",
                      '-M', f"author={cfg.get('author', '')}", '-M', f"date={time.strftime('%Y-%m-%d')}",
                      '-V', f"doc-title={clean(cfg.get('title'))}", '-V', f"doc-author={clean(cfg.get('author'))}",
                      '-V', f'doc-site={clean(site)}'], md)
    (work / 'book.typ').write_text(typst_compat(typ), encoding='utf-8')
    if keep_typ: keep_typ.parent.mkdir(parents=True, exist_ok=True); shutil.copy(work / 'book.typ', keep_typ)
    t1 = time.time()
    out_pdf.parent.mkdir(parents=True, exist_ok=True)
    try:
        typst_compile(work / 'book.typ', out_pdf, work)
    except Exception as e:
        dbg = out_pdf.with_suffix('.typ'); shutil.copy(work / 'book.typ', dbg)
        raise RuntimeError(f'typst failed on the book (source kept in {dbg}): {e}') from None
    log(f'PDF: pandoc {t1 - t0:.1f}s, typst {time.time() - t1:.1f}s -> {out_pdf} ({out_pdf.stat().st_size / 1e6:.1f} MB)')
    return out_pdf


# ------------------------------------------------------------------------------------------------ README
def build_readme(nbs: Path, cfg: dict, lib: Library, dst: Path) -> Path:
    "README.md from the readme notebook, as nbdev_readme does: title and description, cells, outputs; links to the site."
    readme_nb = cfg.get('readme_nb', 'index.ipynb')
    p = read_page(Entry(readme_nb, None), nbs, lib)
    site = (cfg.get('doc_host', '') + cfg.get('doc_baseurl', '')).rstrip('/')

    def links(md: str) -> str:
        def sub(m):
            target = m.group(2)
            if re.match(r'^[\w./-]+\.ipynb(#.*)?$', target) and '/' not in target.split('#')[0]:
                f, _, frag = target.partition('#')
                target = f'{site}/{page_name(f)}.html' + (f'#{frag}' if frag else '')
            return f'{m.group(1)}({target})'
        return re.sub(r'(\]\s?)\(([^)\s]+)\)', sub, md)

    out = [f'# {p.title}', '']
    if p.description: out += [f'> {p.description}', '']
    figdir = dst.parent / f'{Path(readme_nb).stem}_files' / 'figure-commonmark'
    for c in p.cells:
        if c.kind == 'markdown': out += [links(c.text), '']; continue
        if c.text: out += [fence(c.text, info=' python'), '']
        for o in c.outputs:
            if o.kind in ('stream', 'error'):
                out += ['    ' + l if l else '' for l in o.text.splitlines()] + ['']
                continue
            d = o.data
            if 'text/markdown' in d: out += [links(d['text/markdown']), '']
            elif PLOTLY_MIME in d: out += [f'*(Interactive chart: see [the docs]({site}/{p.name}.html).)*', '']
            elif 'image/png' in d:
                figdir.mkdir(parents=True, exist_ok=True)
                fn = figdir / f'cell-{c.idx}-output-{len(list(figdir.iterdir())) + 1}.png'
                fn.write_bytes(base64.b64decode(d['image/png']))
                out += [f'![]({fn.relative_to(dst.parent).as_posix()})', '']
            elif 'text/html' in d and '<script' not in d['text/html']: out += [d['text/html'].strip(), '']
            elif 'text/plain' in d: out += ['    ' + l if l else '' for l in d['text/plain'].splitlines()] + ['']
    text = re.sub(r'\n{3,}', '\n\n', '\n'.join(out)).strip() + '\n'
    dst.write_text(text, encoding='utf-8')
    for w in p.warnings: log(f'{readme_nb}: {w}')
    log(f'README: {dst} from {nbs / readme_nb}')
    return dst


# ------------------------------------------------------------------------------------------------ Quarto routes
def book_sources(pages: list[Page], dst: Path, cache: Path) -> list[Path]:
    "Quarto-ready copies of the notebooks for the book project (top-level _quarto.yml): nbdev's display rules "
    "applied, directives replaced by Quarto's, plotly charts as PNG outputs."
    figs = [o.data[PLOTLY_MIME] for p in pages for c in p.cells for o in c.outputs if o.kind == 'data' and PLOTLY_MIME in o.data]
    charts = StaticCharts(cache)
    if figs: charts.prepare(figs)
    dst.mkdir(parents=True, exist_ok=True)
    written = []
    for p in pages:
        cells = []
        unnumbered = ' {.unnumbered}' if p.entry.part is None else ''
        head = f'# {p.title}{unnumbered}' + (f'\n\n*{p.description}*' if p.description else '')
        cells.append({'cell_type': 'markdown', 'metadata': {}, 'source': head})
        for c in p.cells:
            if c.kind == 'markdown':
                cells.append({'cell_type': 'markdown', 'metadata': {}, 'source': c.text}); continue
            opts = []
            if not c.text: opts.append('#| echo: false')
            if any(o.showdoc for o in c.outputs): opts.append('#| output: asis')
            if c.fold: opts += ['#| code-fold: show', '#| code-summary: "Exported source"']
            outs = []
            for o in c.outputs:
                if o.kind == 'stream': outs.append({'output_type': 'stream', 'name': o.name, 'text': o.text + '\n'})
                elif o.kind == 'error': outs.append({'output_type': 'stream', 'name': 'stderr', 'text': o.text + '\n'})
                else:
                    d = dict(o.data)
                    if PLOTLY_MIME in d:
                        png = charts(d.pop(PLOTLY_MIME))
                        d = {'image/png': base64.b64encode(png).decode()} if png else {'text/plain': '(interactive chart: see the web page)'}
                    outs.append({'output_type': 'display_data', 'data': d, 'metadata': {}})
            cells.append({'cell_type': 'code', 'metadata': {}, 'execution_count': None, 'outputs': outs,
                          'source': '\n'.join(opts + ([c.text] if c.text else ['None']))})
        for n, c in enumerate(cells): c['id'] = f'c{n:03d}'
        nb = {'cells': cells, 'metadata': {'kernelspec': {'display_name': 'python3', 'language': 'python', 'name': 'python3'}},
              'nbformat': 4, 'nbformat_minor': 5}
        f = dst / p.entry.file
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(nb, indent=1, ensure_ascii=False), encoding='utf-8')
        written.append(f)
    log(f'book sources: {len(written)} notebook(s) in {dst}')
    return written


def plotly_to_html_in(proc: Path) -> int:
    "In nbdev's processed notebooks (_proc/), give plotly JSON outputs an HTML form Quarto can show (local plotly.js)."
    import plotly
    n = 0
    for f in sorted(proc.glob('*.ipynb')):
        nb = json.loads(f.read_text(encoding='utf-8'))
        first, changed = True, False
        for c in nb.get('cells', []):
            for o in c.get('outputs', []):
                d = o.get('data', {})
                if PLOTLY_MIME not in d: continue
                fig = d.pop(PLOTLY_MIME)
                n += 1
                h = plotly_div(fig, f'{f.stem}-fig-{n}')
                if first: h = '<script src="plotly.min.js" charset="utf-8"></script>\n' + h; first = False
                d['text/html'] = h
                changed = True
        if changed: f.write_text(json.dumps(nb, indent=1, ensure_ascii=False), encoding='utf-8')
    shutil.copy(Path(plotly.__file__).parent / 'package_data' / 'plotly.min.js', proc / 'plotly.min.js')
    return n


def quarto_site(cfg: dict):
    "nbdev_docs, with plotly charts made visible: nbdev's processors into _proc/, plotly to HTML, quarto render."
    if not shutil.which('quarto'): raise SystemExit('quarto is not installed; use `make docs` (registry-only route)')
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    subprocess.run(['nbdev_proc_nbs'], cwd=ROOT, check=True, env=env)
    proc = ROOT / '_proc'
    log(f'{plotly_to_html_in(proc)} plotly chart(s) given an HTML form')
    subprocess.run(['quarto', 'render', '--no-cache'], cwd=proc, check=True, env=env)
    doc = ROOT / cfg.get('doc_path', '_docs')
    shutil.rmtree(doc, ignore_errors=True)
    shutil.move(str(proc / Path(cfg.get('doc_path', '_docs')).name), str(doc))
    shutil.copy(proc / 'plotly.min.js', doc / 'plotly.min.js')
    log(f'Quarto site in {doc}')


def quarto_book(pages: list[Page], cfg: dict, cache: Path, nbs: Path, to: str = 'pdf'):
    "The book through Quarto (top-level _quarto.yml), from processed copies in build/book/; PDF copied to the site."
    if not shutil.which('quarto'): raise SystemExit('quarto is not installed; use `make docs` (registry-only route)')
    dst = ROOT / 'build' / 'book'
    shutil.rmtree(dst, ignore_errors=True)
    book_sources(pages, dst, cache)
    for e in read_sidebar(nbs):        # _quarto.yml lists every chapter: a missing one gets a placeholder
        f = dst / e.file
        if not f.exists():
            log(f'{e.file} does not exist: placeholder chapter')
            f.write_text(json.dumps({'cells': [{'cell_type': 'markdown', 'metadata': {}, 'source':
                f'# {page_name(e.file)}\n\n*This chapter is not written yet.*'}], 'metadata': {}, 'nbformat': 4,
                'nbformat_minor': 5}), encoding='utf-8')
    subprocess.run(['quarto', 'render', '--to', to], cwd=ROOT, check=True)
    res = ROOT / '_book' / f"{cfg.get('lib_name', 'recsys_nb')}.{'pdf' if to in ('pdf', 'typst') else to}"
    doc = ROOT / cfg.get('doc_path', '_docs')
    if res.exists() and doc.exists(): shutil.copy(res, doc / PDF_NAME)
    log(f"Quarto book: {res}")


# ------------------------------------------------------------------------------------------------ main
def book_yml(nbs: Path, path: Path) -> bool:
    "Rewrite the chapter list of the Quarto book (_quarto.yml) from nbs/sidebar.yml; True if it changed."
    lines, part = [], object()
    for e in read_sidebar(nbs):
        if e.part is None: lines.append(f'    - build/book/{e.file}'); part = None; continue
        if e.part != part: lines += [f'    - part: "{e.part}"', '      chapters:']; part = e.part
        lines.append(f'        - build/book/{e.file}')
    text = path.read_text(encoding='utf-8')
    m = re.search(r'^  chapters:\n((?:    .*\n)+)', text, re.M)
    if not m: raise SystemExit(f'no `  chapters:` block in {path}')
    new = text[:m.start(1)] + '\n'.join(lines) + '\n' + text[m.end(1):]
    if new != text: path.write_text(new, encoding='utf-8')
    log(f"{path}: chapter list {'updated' if new != text else 'already in sync'} with {nbs / 'sidebar.yml'}")
    return new != text


def load_pages(nbs: Path, only: list[str] | None, lib: Library) -> list[Page]:
    entries = read_sidebar(nbs)
    if only:
        want = {o if o.endswith('.ipynb') else o + '.ipynb' for o in only}
        entries = [e for e in entries if e.file in want or Path(e.file).stem in only or page_name(e.file) in only]
    missing = [e.file for e in entries if not (nbs / e.file).exists()]
    if missing: log(f"not written yet, skipped: {', '.join(missing)}")
    pages = []
    for e in entries:
        if not (nbs / e.file).exists(): continue
        p = read_page(e, nbs, lib)
        for w in p.warnings: log(f'{e.file}: {w}')
        pages.append(p)
    return pages


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('what', choices=['site', 'html', 'pdf', 'readme', 'book-sources', 'book-yml', 'quarto-site', 'quarto-book'])
    ap.add_argument('dest', nargs='?', help='book-sources: the directory (default build/book)')
    ap.add_argument('--out', default=None, help='output directory (default: doc_path of settings.ini, _docs)')
    ap.add_argument('--nbs', default=None, help='notebook directory (default: nbs_path of settings.ini)')
    ap.add_argument('--only', default='', help='comma-separated notebooks to build (e.g. index,00_data); default all')
    ap.add_argument('--no-library', action='store_true', help='never call show_doc on the package; stored outputs only')
    ap.add_argument('--cache', default=None, help='cache for chart images (default $RECSYS_NB_CACHE or ~/.cache/recsys_nb, /docs)')
    ap.add_argument('--jobs', type=int, default=2, help='pandoc processes at once (default 2)')
    ap.add_argument('--to', default='pdf', help="quarto-book: Quarto's format, pdf (LaTeX) or typst")
    ap.add_argument('--keep-typ', action='store_true', help='also write the book\'s typst source next to the PDF')
    a = ap.parse_args(argv)
    t0 = time.time()
    cfg = read_settings()
    nbs = Path(a.nbs) if a.nbs else ROOT / cfg.get('nbs_path', 'nbs')
    out = Path(a.out) if a.out else ROOT / cfg.get('doc_path', '_docs')
    cache = Path(a.cache) if a.cache else Path(os.environ.get('RECSYS_NB_CACHE', Path.home() / '.cache' / 'recsys_nb')) / 'docs'
    lib = Library(not a.no_library)
    if a.what == 'readme':
        build_readme(nbs, cfg, lib, Path(a.dest) if a.dest else ROOT / 'README.md'); return 0
    if a.what == 'quarto-site':
        quarto_site(cfg); return 0
    if a.what == 'book-yml':
        book_yml(nbs, ROOT / '_quarto.yml'); return 0
    pages = load_pages(nbs, [o.strip() for o in a.only.split(',') if o.strip()] or None, lib)
    if not pages: raise SystemExit(f'no notebooks of {nbs / "sidebar.yml"} found')
    log(f"{len(pages)} notebook(s): {', '.join(p.entry.file for p in pages)} (read in {time.time() - t0:.1f}s)")
    if a.what == 'book-sources':
        book_sources(pages, Path(a.dest) if a.dest else ROOT / 'build' / 'book', cache); return 0
    if a.what == 'quarto-book':
        quarto_book(pages, cfg, cache, nbs, a.to); return 0
    with tempfile.TemporaryDirectory(prefix='docs-') as tmp:
        tmp = Path(tmp)
        if a.what in ('site', 'html'):
            if a.what == 'site' and out.exists():   # a fresh site: no pages left from renamed notebooks
                for f in out.glob('*.html'): f.unlink()
                shutil.rmtree(out / 'figures', ignore_errors=True)
            t1 = time.time()
            files = build_html(pages, out, cfg, tmp, pdf=a.what == 'site' or (out / PDF_NAME).exists(), jobs=a.jobs)
            log(f'HTML: {len(files)} page(s) in {out} ({time.time() - t1:.1f}s)')
        if a.what in ('site', 'pdf'):
            build_pdf(pages, out / PDF_NAME, cfg, tmp, cache, keep_typ=(out / 'recsys_nb.typ') if a.keep_typ else None)
    log(f'done in {time.time() - t0:.1f}s')
    return 0


if __name__ == '__main__':
    sys.exit(main())

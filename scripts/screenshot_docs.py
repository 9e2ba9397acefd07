#!/usr/bin/env python3
"""Look at the built docs as a reader does: headless Chromium screenshots of pages (scrollbars shown), the PDF's first pages as PNG.

    python scripts/screenshot_docs.py [--site _docs] [--out build/screenshots] [--pages index,data,...|all]
                                      [--pdf-pages 1-3,78,196]

For each page: a screenshot (PNG), the browser console (Chromium's `--enable-logging=stderr`), and the DOM after the
scripts ran (`--dump-dom`), which tells whether every plotly chart drew its SVG. The first page holding a chart is
also shot scrolled to that chart. `pdftoppm` turns PDF pages (default 1-3) into PNGs. Fails (exit 1) on a blank image (one
colour), a console error, a chart that did not draw, or a missing tool. Writes report.json next to the images.
"""
from __future__ import annotations

import argparse, html, json, re, shutil, subprocess, sys, tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync', '--mute-audio',
         '--disable-features=Translate,MediaRouter,OptimizationHints']
_re_console = re.compile(r'CONSOLE\(\d+\)\] "(.*)", source: (.*)$|:CONSOLE:\d+\] "(.*)", source: (.*)$')


FOCUS_JS = '''<script>(function () {
  var el = document.getElementById('@ID@'), main = document.querySelector('main.content');
  if (!el || !main) return;
  var top = el; while (top.parentElement && top.parentElement !== main) top = top.parentElement;
  var keep = 2, sib = top.previousElementSibling;
  while (sib && keep-- > 0) sib = sib.previousElementSibling;
  while (sib && !sib.classList.contains('page-header')) { var prev = sib.previousElementSibling; sib.remove(); sib = prev; }
})();</script>'''


# Records, in an attribute of <html> that --dump-dom shows, what a reader's console would show as errors: uncaught
# exceptions, rejected promises, console.error, resources that failed to load. Injected into a copy of the page.
PROBE_JS = '''<script>(function () {
  var errs = [], root = document.documentElement;
  function push(m) { errs.push(String(m).slice(0, 300)); root.setAttribute('data-probe-errors', JSON.stringify(errs)); }
  root.setAttribute('data-probe-errors', '[]');
  window.addEventListener('error', function (e) {
    var t = e.target;
    if (t && t !== window && (t.src || t.href)) push('failed to load ' + (t.src || t.href));
    else push('uncaught ' + (e.message || e));
  }, true);
  window.addEventListener('unhandledrejection', function (e) { push('unhandled rejection: ' + ((e.reason && e.reason.message) || e.reason)); });
  var ce = console.error;
  console.error = function () { push('console.error: ' + Array.prototype.join.call(arguments, ' ')); return ce.apply(console, arguments); };
})();</script>'''
_re_external = re.compile(r'<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)="(https?:)?//[^"]*"', re.I)


def chromium() -> str:
    for name in ('chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable'):
        p = shutil.which(name)
        if p: return p
    raise SystemExit('chromium not found: apt-get install -y chromium (make screenshots does it)')


def run_chromium(args: list[str], timeout=90) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix='chromium-profile-') as prof:
        return subprocess.run([chromium(), *FLAGS, f'--user-data-dir={prof}', *args], capture_output=True, text=True,
                              timeout=timeout)


def console_messages(stderr: str) -> list[dict]:
    "Console lines Chromium logged (level from the log prefix: INFO/WARNING/ERROR)."
    out = []
    for line in stderr.splitlines():
        if 'CONSOLE' not in line: continue
        m = _re_console.search(line)
        level = 'ERROR' if ':ERROR:' in line else ('WARNING' if ':WARNING:' in line else 'INFO')
        msg = (m.group(1) or m.group(3)) if m else line
        src = (m.group(2) or m.group(4)) if m else ''
        if 'Uncaught' in msg: level = 'ERROR'
        out.append({'level': level, 'message': msg, 'source': src})
    return out


def blank(png: Path) -> tuple[bool, dict]:
    "Whether an image is one colour (or nearly: under 0.1% of pixels differ from the most common one)."
    from PIL import Image
    im = Image.open(png).convert('RGB')
    small = im.resize((max(1, im.width // 4), max(1, im.height // 4)))
    colors = small.getcolors(maxcolors=1 << 20) or []
    n = small.width * small.height
    top = max(c for c, _ in colors) if colors else n
    info = {'size': [im.width, im.height], 'colours': len(colors), 'non_background_share': round(1 - top / n, 4)}
    return len(colors) <= 1 or (1 - top / n) < 0.001, info


def shoot(page: Path, png: Path, size: str, budget_ms: int, extra_js: str = '') -> dict:
    "Screenshot, console and DOM of `page`, through a copy of it (beside it, so relative links hold) with the probe."
    text = page.read_text(encoding='utf-8')
    external = [m.group(0)[:160] for m in _re_external.finditer(text)]
    probe = page.with_name(f'.screenshot-{page.stem}.html')
    probe.write_text(text.replace('<head>', '<head>' + PROBE_JS, 1).replace('</body>', extra_js + '</body>'), encoding='utf-8')
    try:
        url = probe.as_uri()
        r = run_chromium([f'--window-size={size}', f'--virtual-time-budget={budget_ms}', '--enable-logging=stderr', '--v=0',
                          f'--screenshot={png}', url])
        d = run_chromium([f'--virtual-time-budget={budget_ms}', '--dump-dom', url])
    finally: probe.unlink()
    dom = d.stdout
    charts = len(re.findall(r'class="[^"]*plotly-graph-div', dom))
    drawn = len(re.findall(r'class="[^"]*\bsvg-container\b', dom))   # one per chart plotly drew
    m = re.search(r'data-probe-errors="([^"]*)"', dom)
    errors = json.loads(html.unescape(m.group(1))) if m else ['the page did not run its scripts (no probe result)']
    console = console_messages(r.stderr)
    for c in console:
        if c['level'] == 'ERROR' and not any(c['message'] in e for e in errors): errors.append(c['message'])
    is_blank, info = blank(png) if png.exists() else (True, {'error': r.stderr[-500:]})
    return {'page': page.name, 'png': str(png), 'blank': is_blank, **info, 'charts': charts, 'charts_drawn': drawn,
            'errors': errors, 'console': console, 'external_resources': external, 'dom_chars': len(dom)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--site', default=str(ROOT / '_docs'))
    ap.add_argument('--out', default=str(ROOT / 'build' / 'screenshots'))
    ap.add_argument('--pages', default='index,data', help="pages to shoot, or 'all' (the first page with a chart is added)")
    ap.add_argument('--pdf-pages', default='1-3', help='PDF pages to rasterise: numbers and ranges, e.g. 1-3,78,196')
    ap.add_argument('--pdf', default=None, help='PDF to rasterise (default SITE/recsys_nb.pdf)')
    ap.add_argument('--size', default='1400,1800')
    ap.add_argument('--budget', type=int, default=8000, help='virtual time for scripts to run, ms')
    a = ap.parse_args(argv)
    site, out = Path(a.site).resolve(), Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob('*.png'): old.unlink()
    problems, shots = [], []
    names = sorted(f.stem for f in site.glob('*.html')) if a.pages == 'all' else [p for p in a.pages.split(',') if p]
    chart_page = next((f.stem for f in sorted(site.glob('*.html')) if 'plotly-graph-div' in f.read_text(encoding='utf-8')), None)
    if chart_page and chart_page not in names: names.append(chart_page)
    if not chart_page: print('note: no page with a plotly chart in', site)
    for nm in names:
        f = site / f'{nm}.html'
        if not f.exists(): problems.append(f'{f} missing'); continue
        shots.append(shoot(f, out / f'{nm}.png', a.size, a.budget))
        if nm == chart_page:   # the same page starting a little above its first chart (headless Chromium
            # screenshots of `page.html#anchor` come out blank, so the copy drops what comes before instead)
            m = re.search(r'<div id="([^"]+)" class="plotly-graph-div', f.read_text(encoding='utf-8'))
            if m: shots.append(shoot(f, out / f'{nm}-chart.png', a.size, a.budget, FOCUS_JS.replace('@ID@', m.group(1))))
    for s in shots:
        if s['blank']: problems.append(f"{s['png']}: blank page {s.get('size')}")
        for e in s['errors']: problems.append(f"{s['page']}: console error: {e}")
        for e in s['external_resources']: problems.append(f"{s['page']}: loads from the network (readers may be offline): {e}")
        if s['charts'] != s['charts_drawn']:
            problems.append(f"{s['page']}: {s['charts_drawn']} of {s['charts']} chart(s) drew")
    pdf = Path(a.pdf) if a.pdf else site / 'recsys_nb.pdf'
    pdf_pages = []
    if pdf.exists():
        if not shutil.which('pdftoppm'): raise SystemExit('pdftoppm not found: apt-get install -y poppler-utils')
        for part in filter(None, a.pdf_pages.split(',')):
            first, _, last = part.partition('-')
            subprocess.run(['pdftoppm', '-png', '-r', '80', '-f', first, '-l', last or first, str(pdf), str(out / 'pdf')], check=True)
        for png in sorted(out.glob('pdf-*.png')):
            is_blank, info = blank(png)
            pdf_pages.append({'png': str(png), 'blank': is_blank, **info})
            if is_blank: problems.append(f'{png}: blank PDF page')
        if not pdf_pages: problems.append(f'{pdf}: no page rendered')
    else: problems.append(f'{pdf} missing')
    report = {'site': str(site), 'pages': shots, 'pdf': pdf_pages, 'problems': problems}
    (out / 'report.json').write_text(json.dumps(report, indent=1))
    for s in shots:
        print(f"{Path(s['png']).name:28} {'BLANK' if s['blank'] else 'ok':5} charts {s['charts_drawn']}/{s['charts']}"
              f"  errors: {len(s['errors'])}  console lines: {len(s['console'])}")
        for e in s['errors']: print(f"    error: {e[:200]}")
    for p in pdf_pages: print(f"{Path(p['png']).name:28} {'BLANK' if p['blank'] else 'ok'}")
    print(f'images and report.json in {out}')
    if problems:
        print('PROBLEMS:\n  ' + '\n  '.join(problems)); return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())

#!/usr/bin/env python3
"""nbdev's processing of the notebooks into _proc/, the input of both docs routes (scripts/build_docs.py and Quarto).

    python scripts/docs/nbdev_proc.py [--force] [--n_workers 2]    # from the project root (settings.ini)

This is `nbdev.serve.proc_nbs`, the processing step of `nbdev_proc_nbs` / `nbdev_docs`: every notebook of nbs/ is run
through nbdev's processors (front matter from the title cell, hidden and exported cells dropped, `show_doc` cells
executed and marked `#| echo: false` / `#| output: asis`, backticked names linked to the doc host, ...) and written to
_proc/ with the other files of nbs/ (sidebar.yml, _quarto.yml, styles.css). Only notebooks changed since the last run
are processed again, unless `--force` (or this file is newer than _proc/). The differences from `nbdev_proc_nbs`:

* the `show_doc` cells nbdev adds for the definitions of an exported cell come in the order of the definitions
  (nbdev inserts them in reverse);
* `show_doc` of a dataclass defined in a notebook lists its fields' `# comments` (fastcore finds no source for a
  class of the shell's `__main__`, so these signatures would come without them);
* nothing else is done: no attempt to install Quarto, no rewriting of nbs/nbdev.yml or the package's _modidx.py.
"""
import argparse, ast, linecache
from pathlib import Path

import fastcore.docments
from nbdev.config import get_config
from nbdev.process import Processor
from nbdev.processors import FilterDefaults, add_show_docs
import nbdev.serve

class order_show_docs(Processor):
    "The show_doc cells nbdev adds after an exported cell, in the order of its definitions (nbdev adds them reversed)."
    def begin(self):
        cells, run = [], []
        for c in self.nb.cells:
            if c.get('has_sd'): run.append(c); continue
            cells += run[::-1] + [c]
            run = []
        self.nb.cells = cells + run[::-1]


_dataclass_source = getattr(fastcore.docments.get_dataclass_source, '__wrapped__', fastcore.docments.get_dataclass_source)


def dataclass_source(cls) -> str:
    """The source of a dataclass for its fields' `# comments`: fastcore gives none for one defined in a notebook (its
    module, the shell's `__main__`, has no file); this finds its definition in the cells the shell has run."""
    if getattr(cls, '__module__', None) != '__main__': return _dataclass_source(cls)
    for name in reversed([n for n in linecache.cache if n.startswith('<ipython-input-')]):
        lines = linecache.getlines(name)
        try: tree = ast.parse(''.join(lines))
        except SyntaxError: continue
        for t in tree.body:
            if isinstance(t, ast.ClassDef) and t.name == cls.__name__:
                return ''.join(lines[min([t.lineno] + [d.lineno for d in t.decorator_list]) - 1:t.end_lineno])
    return ''


dataclass_source.__wrapped__ = _dataclass_source
fastcore.docments.get_dataclass_source = dataclass_source     # in each worker process too: they import this module


class DocsFilter(FilterDefaults):
    "nbdev's processors, `order_show_docs` after `add_show_docs`."
    def base_procs(self):
        procs = list(super().base_procs())
        i = procs.index(add_show_docs) + 1
        return procs[:i] + [order_show_docs] + procs[i:]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--force', action='store_true', help='process every notebook, not only those changed')
    ap.add_argument('--n_workers', type=int, default=2, help='notebooks processed at once (default 2)')
    a = ap.parse_args()
    import nbdev_proc                             # by its module name, which the worker processes import too
    nbdev.serve.FilterDefaults = nbdev_proc.DocsFilter      # what proc_nbs hands to each worker process
    cache = get_config().config_path / '_proc'     # proc_nbs's output; redone whole when these processors changed
    force = a.force or (cache.exists() and Path(__file__).stat().st_mtime > cache.stat().st_mtime)
    cache = nbdev.serve.proc_nbs(n_workers=a.n_workers, force=force)
    print(f'processed notebooks in {cache}')


if __name__ == '__main__':
    main()

import os
from pathlib import Path
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / 'shared' / 'data'

@pytest.fixture(autouse=True, scope='session')
def _cache_in_tmp(tmp_path_factory):
    "Keep generated datasets out of the user's cache during tests."
    os.environ.setdefault('RECSYS_NB_CACHE', str(tmp_path_factory.mktemp('cache')))

def needs_shared(sub):
    "Skip unless ../shared/data/<sub> exists next to the repository."
    return pytest.mark.skipif(not (SHARED_DATA / sub).exists(), reason=f'../shared/data/{sub} not present')


def css_selectors(css:str) -> list:
    "Every selector of a CSS text's rules (comma-separated ones apart)."
    return [s.strip() for rule in css.split('}') if '{' in rule for s in rule.split('{')[0].split(',') if s.strip()]


def pytest_configure(config):
    config.addinivalue_line('markers', 'serial: starts worker processes and kills or interrupts them on a clock; '
                            '`make pytest` runs these alone, after the others, so that no other test competes for the cores')

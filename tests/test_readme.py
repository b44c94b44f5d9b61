"""The examples in README.md are run as doctests, so they stay true."""

from __future__ import annotations

import doctest
import pathlib

README = pathlib.Path(__file__).resolve().parent.parent / 'README.md'


def test_readme_examples():
    result = doctest.testfile(
        str(README), module_relative=False, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
    )
    assert result.attempted > 10
    assert result.failed == 0

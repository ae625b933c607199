"""Helpers shared by the test files (no tests here). Imported as `helpers.<module>`: pytest puts `tests/` on
`sys.path` (its default `prepend` import mode, `tests/` having no `__init__.py`), as it does for `conftest.py`."""

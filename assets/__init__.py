"""The data files AMT Studio ships: the open hand model (`hand/`), icons (`icons/`).

Installed as the package `amt_assets` (pyproject maps this folder to it), so they are found the same way in a
checkout, an editable install and a wheel: `amt_core.paths.ASSETS_DIR`.
"""

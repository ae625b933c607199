"""The package list, which pyproject.toml cannot say: every `amt_core*` and `amt_studio*` package, and the top-level
`assets/` folder (hand model, icons) installed as the package `amt_assets`, so it is found one way in a checkout,
an editable install and a wheel (`amt_core.paths.ASSETS_DIR`). Everything else is in pyproject.toml."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["amt_core", "amt_core.*", "amt_studio", "amt_studio.*"]), "amt_assets"],
    package_dir={"amt_assets": "assets"},
)

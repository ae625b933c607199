"""amt_core: the Advanced Manipulation Transformer and everything that runs without a GUI.

Data, model, losses, metrics, the trainer and the `amt-core` command line. This package never imports PySide6
or amt_studio (a lint contract in pyproject.toml enforces it).
"""

__version__ = "0.1.0"

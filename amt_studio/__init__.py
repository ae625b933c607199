"""AMT Studio: the PySide6 desktop app that starts or attaches to training runs, shows the model learn, and inspects
checkpoints. Its data layer (`amt_studio.state`, `amt_studio.render`) is Qt-free; `amt_studio.views` subscribe to it.
"""

__all__: list[str] = []

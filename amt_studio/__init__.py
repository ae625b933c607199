"""AMT Studio: the PySide6 desktop app that starts, watches and steers AMT training runs."""

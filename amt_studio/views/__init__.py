"""Qt views of the studio; each subscribes to the Qt-free state (`amt_studio.state`) and updates its items in place."""

"""Training: the trainer and its stage plan, stability, precision and memory, checkpoints, the run directory's
events and the control channel. `amt_core.train.trainer.Trainer` is the entry point; nothing here imports a GUI."""

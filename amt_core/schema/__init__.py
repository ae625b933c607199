"""The two records every layer above shares: the Sample a dataset yields (`schema.sample`, one schema for every
dataset) and the AMTOutput a model returns (`schema.output`). They sit below the readers, the synthetic world, the
models, the losses and the metrics, so each of those can use them without importing another."""

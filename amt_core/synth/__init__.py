"""amt_core.synth"""

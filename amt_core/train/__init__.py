"""amt_core.train"""

"""amt_core.hand"""

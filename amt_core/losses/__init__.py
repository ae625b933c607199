"""amt_core.losses"""

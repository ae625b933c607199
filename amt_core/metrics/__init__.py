"""amt_core.metrics"""

"""amt_core.model"""

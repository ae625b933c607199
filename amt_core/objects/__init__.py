"""amt_core.objects"""

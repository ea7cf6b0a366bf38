"""hamur-dist: distributed training of HAMUR multi-domain CTR models on Ray."""
__version__ = "0.1.0"

"""A BitTorrent tracker (HTTP BEP 3/23/7/48 and UDP BEP 15): sans-I/O core, trio shell.

Usable on its own (``python -m tracker``) and embedded in the seeder daemon.
"""

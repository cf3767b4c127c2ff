"""Seeding: the libtorrent session and its alerts, the on-disk seed cache, the seeding
policy (which torrents the session holds), the swarm budget and the web seed gate.
"""

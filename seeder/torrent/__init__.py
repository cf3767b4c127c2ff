"""Torrents: the catalog entry every layer passes, metainfo (pure), merkle trees, hashing,
the SQLite catalog, and the torrent service (get-or-generate with single flight).
"""

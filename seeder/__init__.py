"""s3torrent's daemon: GetObjectTorrent, torrent generation and libtorrent seeding."""

__version__ = "0.1.0"

"""s3torrent's daemon: GetObjectTorrent, torrent generation and libtorrent seeding for S3 buckets."""

__version__ = "0.1.0"

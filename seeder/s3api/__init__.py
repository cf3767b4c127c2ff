"""The S3 API: request parsing, SigV4 auth, conditional requests, ranges, S3 XML errors,
and the handlers that answer GetObjectTorrent, HEAD/GET of objects and the web seed.
"""

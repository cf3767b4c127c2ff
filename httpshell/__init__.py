"""The one HTTP/1.1 server shell: requests and responses, the parser, response rendering,
connections, listeners and deadlines. Used by the S3 API, the web seed, the tracker's HTTP
front and /metrics; imports neither ``seeder`` nor ``tracker``.
"""

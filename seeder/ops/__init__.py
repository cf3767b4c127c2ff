"""Running the daemon: the one nursery tree, the CLI, logging, sd_notify and the scanner.
"""

"""Daemon configuration: frozen dataclasses loaded from a TOML file plus
``SEEDER_<SECTION>_<KEY>`` environment overrides, validated with one line per problem.
"""

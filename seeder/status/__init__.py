"""The status page: ``GET /`` (HTML) and ``GET /torrents.json`` on the metrics listener.

What it owns: the page's model and templates (Jinja2, autoescaped), the rate history and
its sampler, the ring of recent warnings, paging. What it reads comes through the narrow
interfaces of ``sources`` (catalog queries, tracker counts, session facts, per-object byte
tallies, the cluster hook), wired by ``seeder.ops.daemon``; it imports nothing above
``seeder.torrent``. The modules:

- ``sources``: the interfaces (``Sources``, ``CatalogView``, ``SessionFacts``,
  ``ClusterState``, ``Totals``).
- ``history`` (pure): ``RateHistory``, a bounded ring of rates; ``sampler``: the trio loop
  feeding it.
- ``chart`` (pure): ``render_chart``, the inline SVG.
- ``paging`` (pure): ``parse_page`` of ``?page=``.
- ``errors``: ``ErrorRing``, a logging handler keeping the last warnings.
- ``view``: rows and the page model; ``page``: ``StatusPage`` and its HTTP handler.

The package imports none of them, so the pure modules load without trio or Jinja2.
"""

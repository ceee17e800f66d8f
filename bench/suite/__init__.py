"""The benchmark suite at catalogue scale (``feedray bench``): one module per section.

``run`` builds the world through the platform's own code (``train.bootstrap`` via
``bench.feed_app.bootstrapped``), then runs the sections ``features``, ``retrieval``,
``ranking``, ``memory`` and ``http`` and writes one JSON file and ``BENCHMARKS.md``
(``report``).
"""

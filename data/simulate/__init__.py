"""A simulated video+audio world with ground truth: users, items, sessions, events.

``world`` draws the entities, ``affinity`` is the true user-item preference,
``sessions`` turns it into a stream of engagement events, ``response`` answers a
served feed, ``wire`` and ``sinks`` put events on Kafka or Parquet, and ``run``
ties them into the ``feedray simulate`` command.
"""

"""Pure request/response logic of the feed service (no Ray Serve imports here).

``deployments/`` wires these into Ray Serve; everything here is testable in-process.
"""

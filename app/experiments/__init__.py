"""Experimentation, pure logic: arm assignment and the statistics of a canary run.

``assignment`` (stable arm hash) -> ``metrics`` (per-user counts from exposures and
engagement events) -> ``estimators`` (delta method, CUPED, user bootstrap) ->
``inference`` (fixed z-test, mSPRT, power) -> ``gate`` (the promotion verdict, typed in
``verdict``); ``audit`` (exposure bias by user group); ``report`` (Markdown + PNG + JSON).

Around that logic, the I/O of a canary evaluation: ``offline`` (a window of exposures and
events from the offline store), ``evaluation`` (``evaluate_experiment``: store -> statistics
-> report), ``record`` (the MLflow run and the ``decisions/`` row), ``commands`` (``feedray
canary evaluate``, ``feedray audit bias``).
"""

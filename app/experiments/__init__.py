"""Experimentation: arm assignment, exposure logging, statistics, bias audit."""

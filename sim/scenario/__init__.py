"""Scenario files: schema, runner, checks, results and plots."""

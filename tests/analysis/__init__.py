"""Experiment analysis: statistics, agreement with GrowthBook's engine, SVG pictures."""

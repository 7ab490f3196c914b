"""Spatio-temporal analytics over sightings and cameras (trajectories, clones, co-travel, areas)."""

"""Shared code of the bloodcells pipeline: stage scripts in src/ import from here."""

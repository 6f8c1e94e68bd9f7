"""Turning computed facts into text, JSON and files for people and programs."""

"""Differential-privacy mechanisms: each knows its cost and accuracy before it runs; every draw is OpenDP's."""

"""Adapters: the ports of :mod:`videogen.ports` implemented against AWS and fal.ai."""

"""Backbones shipped with ivmixed. Each is registered through the ``ivmixed.backbones`` entry-point group."""

"""Drivers and fixtures the tests share: real peers, editors, backends and the workbench."""

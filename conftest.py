"""Wires dsrlab's pytest plugin; fixtures and options live in lab/pytest_plugin.py.

The plugin is registered by the ``pytest11`` entry point when dsrlab is
installed (``make install``); this only makes a bare checkout work too.
"""

import importlib.metadata

# pytester: the suite runs inner pytest sessions to test the plugin itself
pytest_plugins = ["pytester"]
if not any(ep.name == "dsrlab" for ep in importlib.metadata.entry_points(group="pytest11")):
    pytest_plugins.append("lab.pytest_plugin")

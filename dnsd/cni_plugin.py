"""The ``netcore-dns`` CNI plugin's old module path, kept for executables already installed: a plugin that
``dnsd cni-install`` wrote before dnsd was cut into layers runs ``from dnsd.cni_plugin import main`` (its C
shim's fallback, or its Python script). The plugin is ``dnsd.cni.plugin``; reinstalling (``dnsd
cni-install``) writes an executable that names it. Imports nothing else: the plugin pays for every import."""

from dnsd.cni.plugin import main

__all__ = ["main"]

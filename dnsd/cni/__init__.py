"""dnsd as a chained CNI plugin, ``netcore-dns`` (issue 29): the plugin's calls (``plugin``), dnsd's socket that
takes them while it runs (``service``), CHECK's query (``check``), the installer (``install``) and the
executable's source (``shim.c``). Imports nothing: the plugin pays for every import on every call."""

"""Record sources: where the names dnsd serves come from, one module each (see ``dnsd.core.records``).

netcore's store (``netcore.store.Store``, opened read-only) is one as it is; ``aardvark`` reads Podman's
networks from the config directory netavark writes for aardvark-dns (parsed by ``aardvark_config``); ``cni``
the attachments the ``netcore-dns`` CNI plugin registered (``cni_store``). Imports nothing: the CNI plugin
loads ``cni_store`` on every call.
"""

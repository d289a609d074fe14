"""``LinuxKernel``: the real ``netcore.kernel.Kernel``, on netlink (pyroute2) and the /etc/netns files."""

from __future__ import annotations

from netcore.kernel import netlink, sandbox
from netcore.system import linux
from netcore.system.processes import runs_in_namespace


class LinuxKernel(netlink.Gateway):
    """The real kernel: netlink.Gateway for the gateway namespace, netlink's and sandbox's functions for the rest."""

    namespace_exists = staticmethod(netlink.namespace_exists)
    list_namespaces = staticmethod(netlink.list_namespaces)
    create_namespace = staticmethod(netlink.create_namespace)
    delete_namespace = staticmethod(netlink.delete_namespace)
    configure_container_interface = staticmethod(netlink.configure_container_interface)
    delete_container_link = staticmethod(netlink.delete_container_link)
    write_etc = staticmethod(sandbox.write_etc)
    remove_etc = staticmethod(sandbox.remove_etc)
    list_etc = staticmethod(sandbox.list_etc)
    read_text = staticmethod(sandbox.read_text)

    def runs_in_gateway(self, pid: int) -> bool:
        if self.namespace is None:
            return True
        return runs_in_namespace(pid, linux.netns_path(self.namespace)) is not False  # unknown: give the benefit

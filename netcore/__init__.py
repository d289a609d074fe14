"""netcore: user-defined bridge networks, veth endpoints, IPAM and their store."""

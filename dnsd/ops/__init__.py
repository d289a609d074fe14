"""Operating dnsd: its Prometheus metrics (``metrics``), the query log (``querylog``) and the control socket
netcore and the CNI plugin drive it through (``control``)."""

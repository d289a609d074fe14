"""What netcore needs of the system besides networking, each fact in one home: libc calls Python lacks
(``linux``), processes (``processes``: alive, what a pid runs), privileges, the clock and the boot ID,
who holds an address and port (``holders``), log files (``logfile``)."""

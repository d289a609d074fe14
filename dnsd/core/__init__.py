"""dnsd's answering core, pure and sans-IO: names in wire form (``wire``), the records a source gives
(``records``), the immutable snapshot of answers (``snapshot``) its builder makes and patches (``builder``),
whose rules (``dialect``), the query-to-reply decision (``answer``), the counters (``stats``) and the settings
with their defaults (``config``). It imports nothing of dnsd's other layers and does no I/O."""

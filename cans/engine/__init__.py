"""What training and evaluation share: checkpoint files (``checkpoint``), processes
(``distributed``) and the CUDA fast path (``fastpath``)."""

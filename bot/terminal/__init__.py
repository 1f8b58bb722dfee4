"""The terminal edge: the break-glass CLI over the same commands, executor, store and audit."""

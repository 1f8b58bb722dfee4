"""Adaptive Card renderers (pure): shared elements, the approval, run and alert cards."""

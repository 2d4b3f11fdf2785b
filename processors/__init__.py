"""The saga engine (generic) and the workflows that use it (FNOL)."""

"""How any process reaches the per-home agent (backend/agent/): finds, starts, wakes and stops it
(control.py). Below the engines, which wake it; the agent package imports it, never the reverse."""

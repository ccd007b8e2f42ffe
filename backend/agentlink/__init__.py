"""How any process reaches the per-home agent (backend/agent/): finds, starts, wakes and stops it
(control.py), and hands it a `submit` (handoff.py: the protocol and the CLI's side). Below the
engines, which start and wake it; the agent package imports it, never the reverse."""

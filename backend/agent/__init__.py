"""The per-user agent: one detached process per DLAAS_HOME that runs both engines' background work
(agent.py), and how any process finds, starts, wakes and stops it (control.py)."""

"""The per-user agent: one detached process per DLAAS_HOME that runs both engines' background work
(agent.py); how any process finds, starts, wakes and stops it is backend/agentlink/control.py."""

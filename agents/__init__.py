"""Planners (CEM, MPPI), the MPC agent, closed-loop evaluation, stable-baselines3 helpers."""

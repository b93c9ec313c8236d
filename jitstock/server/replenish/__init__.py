"""Replenishment that learns: demand, forecasts, lead times, safety stock, ABC and recalculation.

One module per concern, numpy only.  The maths (demand, forecast, leadtime,
policy, abc) works on arrays with one row per bin, so the live server (one
row) and ``jitstock bench policy`` (a thousand rows) run the same code;
``recalc`` is the only part that touches the state DB.
"""

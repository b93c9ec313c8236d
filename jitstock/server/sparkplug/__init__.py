"""Sparkplug B ingest (issue 17): PLC gateways and Ignition publish their tags to jitstock.

Off unless ``JITSTOCK_SPARKPLUG_GROUPS`` names the Sparkplug groups to listen to.
:mod:`.bridge` subscribes to ``spBv1.0/{group}/...``, decodes each payload with
pysparkplug, follows every edge node's BIRTH/DEATH and ``seq`` (:mod:`.nodes`),
and turns the metrics mapped to bins (:mod:`.mappings`) into ordinary jit/v1
readings and statuses handed to the server's one ingest path, so levels,
history, reorders, alerts and the dashboard work exactly as for edge agents.
docs/sparkplug.md tells a plant how to map its gateway's metrics.
"""

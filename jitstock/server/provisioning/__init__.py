"""Device provisioning (issue 16): agents' MQTT clients in Mosquitto's Dynamic Security plugin.

``dynsec`` speaks the plugin's control topic, ``agent_access`` says what an agent
may do and writes its edge.toml, ``provisioner`` puts them together for the API.
docs/provisioning.md is the operator's guide.
"""

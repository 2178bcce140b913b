"""The ground floor: what every floor above needs and nothing about retrieval.

Errors (`errors`), atomic writes (`atomic`), content hashes (`digest`), the content-addressed artifact store
(`store`) and the one YAML-to-pydantic loader (`configfile`). It imports nothing of cascade above it.
"""

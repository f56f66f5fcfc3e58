"""AWS for CaRE: the ``care-ec2`` Prefect worker and what it stands on.

Modules (each named after its concept; only this package and ``signals/`` do network I/O):

- :mod:`~care_flows.aws.worker`: ``CareEC2Worker`` (type ``care-ec2``), its job configuration and variables;
- :mod:`~care_flows.aws.launch`: one tagged, IMDSv2, idempotent instance per flow run, with fallbacks;
- :mod:`~care_flows.aws.faults`: the errors mapping (capacity / unsupported / throttle / fatal) and back-off;
- :mod:`~care_flows.aws.userdata`: the boot script (no secret values, API key read by name on the instance);
- :mod:`~care_flows.aws.ami`: Amazon Linux 2023 AMI from SSM public parameters, by architecture;
- :mod:`~care_flows.aws.pricing`: ``AwsPriceList`` (Price List API, disk cache, embedded fallback, spot);
- :mod:`~care_flows.aws.reaper`, :mod:`~care_flows.aws.preflight`: ``care aws reap`` / ``care aws preflight``;
- :mod:`~care_flows.aws.iam`: the least-privilege policies and the operations the code calls;
- :mod:`~care_flows.aws.clients`: the one boto3 client factory (endpoint override, call observers).

Nothing is imported here, so ``import care_flows.aws`` stays cheap; import the modules you need.
See ``docs/AWS.md``.
"""

__all__: list[str] = []

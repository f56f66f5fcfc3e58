"""Loaded by Prefect through the ``prefect.collections`` entry point.

Importing it registers CaRE's Block types (``care_flows.blocks``) and the ``care-ec2`` worker
type (``care_flows.aws.worker``) with Prefect, so ``prefect block register -m care_flows.blocks``,
``prefect work-pool create --type care-ec2`` and ``prefect worker start --type care-ec2`` work.
"""

from care_flows import blocks  # noqa: F401  (registers Block types)
from care_flows.aws import worker  # noqa: F401  (registers the care-ec2 worker type)

"""The ``care-ec2`` Prefect worker: one right-sized EC2 instance per flow run.

Create a pool and start a worker (the type is registered through the package's
``prefect.collections`` entry point)::

    prefect work-pool create care-eu --type care-ec2
    prefect worker start --pool care-eu --type care-ec2

Per flow run, :meth:`CareEC2Worker.run` launches one instance (see
:mod:`care_flows.aws.launch`: tags, IMDSv2, ``ClientToken``, fallbacks, back-off) whose user
data (:mod:`care_flows.aws.userdata`) runs ``prefect flow-run execute <id>``, reports
``region:instance-id`` as the infrastructure id, then watches the instance and the flow run
(polling with back-off). When the run is final, the flow process still runs the state hooks
(``on_completion``/``on_failure``) and ships its last logs, then the user data powers the instance
off (``InstanceInitiatedShutdownBehavior=terminate``): the worker waits ``final_grace_s`` for that
and terminates the instance only if it is still up then. It terminates at once on cancellation
and when ``ttl_minutes`` pass; when the instance dies first, the run is reported crashed with
EC2's ``StateReason`` (an instance EC2 accepted and then dropped for lack of capacity, before the
run started, is relaunched on the next option).
:meth:`CareEC2Worker.kill_infrastructure` terminates it on cancellation.

If the worker itself stops while a run executes, the instance is left to finish the run; its
own ``shutdown -h +TTL`` and ``care aws reap`` bound its life.

>>> CareEC2Worker.type
'care-ec2'
>>> sorted(CareEC2Worker.get_default_base_job_template()["variables"]["properties"])[:4]
['api_auth_string_secret', 'api_key_secret', 'associate_public_ip', 'aws_credentials']
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timezone
from functools import partial
from typing import TYPE_CHECKING, Any, Optional
from uuid import UUID

import anyio
import anyio.abc
from pydantic import Field, PrivateAttr
from prefect.client.schemas.objects import StateType
from prefect.exceptions import InfrastructureNotAvailable, InfrastructureNotFound
from prefect.states import Cancelled, Crashed
from prefect.workers.base import BaseJobConfiguration, BaseVariables, BaseWorker, BaseWorkerResult
from prefect_aws import AwsCredentials

from care_flows.aws.clients import AwsClients, check_region
from care_flows.aws.faults import classify, error_code, error_message, is_network_error
from care_flows.aws.launch import (
    TAG_FLOW_RUN,
    Attempt,
    LaunchResult,
    _retrying,
    LaunchSpec,
    instance_status,
    launch,
    terminate_instance,
)
from care_flows.aws.iam import check_secret_arn
from care_flows.aws.userdata import (assert_no_secrets, is_secret_value, mask_url,
                                     render_user_data, secret_reason, secret_region, secret_source)
from care_flows.errors import CareError, ConfigError

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun, WorkPool
    from prefect.client.schemas.responses import DeploymentResponse

__all__ = ["CareEC2JobConfiguration", "CareEC2Variables", "CareEC2WorkerResult", "CareEC2Worker", "parse_identifier", "build_launch_spec", "RUN_SETTINGS",
           "MISSING_GRACE_S", "MAX_FAILED_POLLS", "HANDED_BACK_STATES", "api_url_problem", "STATE_REASON_HINTS", "planned_work_s", "describe_secret", "code_location_problem"]

FINAL_STATES = {StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED}
HANDED_BACK_STATES = {StateType.PAUSED: "flow run paused/suspended", StateType.SCHEDULED: "flow run scheduled again (handed back to Prefect)"}
"""Non-final states in which a run no longer needs its instance once that has powered off: a run
suspended with ``suspend_flow_run`` (PAUSED, named Suspended) exits its process, and one handed back
as SCHEDULED is submitted again by Prefect. Marking such a run Crashed would make it impossible to
resume; the instance is done, the run is not."""
MAX_FAILED_POLLS = 30
"""After this many failed checks of the instance in a row (about half an hour at the default
``max_poll_interval_s``) the worker stops watching: it does not terminate the instance (it cannot see
it; the instance's own ``shutdown -h +TTL`` and ``care aws reap`` bound it) and marks the run Crashed
with the reason, so the run is not left Running with nobody watching it (the run can still report
its own final state)."""
DEAD_INSTANCE_STATES = {"shutting-down", "terminated", "stopping", "stopped", "missing"}
MISSING_GRACE_S = 300.0
"""For this long after launch, an instance DescribeInstances does not know (``InvalidInstanceID.NotFound``)
is taken as not yet visible rather than gone: the EC2 API is eventually consistent and may answer
so right after RunInstances ("Eventual consistency in the Amazon EC2 API", EC2 developer guide).
moto answers at once, so only real AWS needs this."""

STATE_REASON_HINTS = {
    "Server.InsufficientInstanceCapacity": "EC2 had no capacity for it after all; add fallback_instance_types or fallback_regions",
    "Client.InternalError": "usually the KMS key of the account's default EBS encryption, which the worker may not use: "
                            "grant it the key (care aws iam-policy --ebs-kms-key-arn, docs/AWS.md section 5)",
    "Client.VolumeLimitExceeded": "the account's EBS volume or storage quota is reached; raise it or free volumes",
}
"""What to do about the ``StateReason`` codes EC2 gives an instance it terminated during launch
(EC2 API reference, ``StateReason``)."""

_DESC = {
    "region": "AWS region to launch the instance in (CaRE's planner sets it per run), e.g. eu-north-1.",
    "instance_type": "EC2 instance type (CaRE's right-sizing sets it per run), e.g. t3.large.",
    "fallback_instance_types": "Instance types to try, in order, when the first has no capacity or is not offered.",
    "fallback_regions": "Regions to try, in order, after every type and zone of `region` failed for capacity.",
    "network_by_region": "Subnets and security groups per region: {region: {subnet_ids: [...], security_group_ids: [...]}}; an entry wins over subnet_id and security_group_ids in its region (CaRE may plan a run in any region); default VPC otherwise.",
    "image_id": "AMI id to boot in `region`. Empty: the SSM parameter below (default: Amazon Linux 2023 for the type's architecture).",
    "image_ssm_parameter": "SSM public parameter holding the AMI id; `{arch}` becomes x86_64 or arm64. Empty: /aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-{arch}.",
    "subnet_id": "Subnet for the instance. Empty: the default VPC's default subnets, one zone after another.",
    "fallback_subnet_ids": "More subnets (other zones) of `region` to try when the first has no capacity.",
    "security_group_ids": "Security groups for the instance (the flow run only needs outbound HTTPS to the Prefect API).",
    "iam_instance_profile": "Instance profile name or ARN; it must allow reading `api_key_secret` and `api_auth_string_secret` (see docs/AWS.md).",
    "key_name": "Optional EC2 key pair name for SSH (usually not needed).",
    "ttl_minutes": "Hard limit on the instance's life: the worker and the instance itself terminate it after this many minutes.",
    "install": "pip requirement spec installed on the instance before the run, e.g. 'care-flows==0.1.0 my-flows==1.2'.",
    "associate_public_ip": "Give the instance a public IP (default false: use a NAT or VPC endpoints).",
    "api_key_secret": "Name or ARN of the Secrets Manager secret (or `/path` / SSM ARN of a SecureString) holding PREFECT_API_KEY; read on the instance, never put in user data.",
    "api_auth_string_secret": "For a self-hosted server behind basic auth: name or ARN of the Secrets Manager secret (or `/path` / SSM ARN of a SecureString) "
    "holding PREFECT_API_AUTH_STRING (user:password); read on the instance like `api_key_secret`, never put in user data.",
    "aws_credentials": "prefect-aws AwsCredentials block the worker uses to call EC2 (its endpoint_url lets tests use moto).",
    "image_id_by_region": "AMI ids per region, {region: ami-id}: what a fallback region boots when image_id is set "
                          "(AMI ids are regional; a fallback region without an entry, and no image_ssm_parameter, is not used).",
    "final_grace_s": "Seconds the instance gets after the flow run is final to run its state hooks, send its last logs and power "
                     "itself off; the worker terminates it only if it is still up then (0: at once).",
    "poll_interval_s": "First interval between checks of the instance and the flow run; it grows 1.5x per check.",
    "max_poll_interval_s": "Largest interval between checks.",
}


def _f(name: str, default: Any = None, **kw: Any) -> Any:
    if "default_factory" in kw:
        return Field(description=_DESC[name], **kw)
    return Field(default=default, description=_DESC[name], **kw)


class CareEC2JobConfiguration(BaseJobConfiguration):
    """What the worker needs to launch and watch one flow run's instance."""

    _withheld: list[str] = PrivateAttr(default_factory=list)  # worker settings kept off the instance (names)
    _from_blocks: list[str] = PrivateAttr(default_factory=list)  # env names whose template reads a Prefect block
    _ttl_raised_from: int | None = PrivateAttr(default=None)  # ttl_minutes before it was raised to cover the planned work
    _code_problem: str | None = PrivateAttr(default=None)  # why an instance may not find the deployment's flow code

    region: str = _f("region", "eu-north-1")
    instance_type: str = _f("instance_type", "t3.micro")
    fallback_instance_types: list[str] = _f("fallback_instance_types", default_factory=list)
    fallback_regions: list[str] = _f("fallback_regions", default_factory=list)
    network_by_region: dict[str, dict[str, list[str]]] = _f("network_by_region", default_factory=dict)
    image_id: Optional[str] = _f("image_id")
    image_id_by_region: dict[str, str] = _f("image_id_by_region", default_factory=dict)
    image_ssm_parameter: Optional[str] = _f("image_ssm_parameter")
    subnet_id: Optional[str] = _f("subnet_id")
    fallback_subnet_ids: list[str] = _f("fallback_subnet_ids", default_factory=list)
    security_group_ids: list[str] = _f("security_group_ids", default_factory=list)
    iam_instance_profile: Optional[str] = _f("iam_instance_profile")
    key_name: Optional[str] = _f("key_name")
    ttl_minutes: int = _f("ttl_minutes", 180, ge=1)
    install: str = _f("install", "care-flows")
    associate_public_ip: bool = _f("associate_public_ip", False)
    api_key_secret: Optional[str] = _f("api_key_secret")
    api_auth_string_secret: Optional[str] = _f("api_auth_string_secret")
    aws_credentials: Optional[AwsCredentials] = _f("aws_credentials", default_factory=AwsCredentials)
    final_grace_s: float = _f("final_grace_s", 120.0, ge=0)
    poll_interval_s: float = _f("poll_interval_s", 10.0, gt=0)
    max_poll_interval_s: float = _f("max_poll_interval_s", 60.0, gt=0)

    @classmethod
    def json_template(cls) -> dict[str, Any]:
        """Every field templated from the variable of the same name (``False`` kept, as in prefect-aws)."""
        configuration: dict[str, Any] = {}
        for key, value in cls.model_json_schema()["properties"].items():
            template = value.get("template")
            configuration[key] = template if template is not None else "{{ " + key + " }}"
        return configuration

    def prepare_for_flow_run(
        self,
        flow_run: "FlowRun",
        deployment: "DeploymentResponse | None" = None,
        flow: Any = None,
        work_pool: "WorkPool | None" = None,
        worker_name: str | None = None,
        worker_id: "UUID | None" = None,
    ) -> None:
        """Prefect's preparation (env, labels, command), then validation of CaRE's fields, and the
        instance lifetime: a run CaRE planned gets ``ttl_minutes`` of at least
        :func:`~care_flows.orchestration.targets.ttl_for_work_minutes` of its planned work (its
        ``care`` marker), unless its region target pins ``ttl_minutes``.

        Prefect copies every setting of the *worker's* profile into the run's env (its database
        URL, home folder, server options...). A process or container on the worker's host may
        want them; an EC2 instance gets them in its user data, readable by anyone who may
        describe the instance. So only the job's own ``env`` (from the work pool, deployment or
        run), the run's ids and :data:`RUN_SETTINGS` are kept.
        """
        own = set(self.env) if isinstance(self.env, dict) else set()
        worker_settings = set(self._base_environment())
        super().prepare_for_flow_run(flow_run, deployment, flow, work_pool, worker_name, worker_id=worker_id)
        env = dict(self.env or {})
        self.env = {k: v for k, v in env.items() if k in own or k in RUN_SETTINGS or k not in worker_settings}
        self._withheld = sorted(set(env) - set(self.env))
        self._from_blocks = sorted(block_env_names(flow_run, deployment, work_pool) & set(self.env))
        if self.max_poll_interval_s < self.poll_interval_s:
            self.max_poll_interval_s = self.poll_interval_s
        self._ttl_raised_from = None
        self._code_problem = code_location_problem(deployment)
        from care_flows.orchestration.targets import TTL_PINNED, ttl_for_work_minutes

        work_s = planned_work_s(flow_run)
        care = (getattr(flow_run, "job_variables", None) or {}).get("care")
        if work_s is not None and not (isinstance(care, Mapping) and care.get(TTL_PINNED)) and self.ttl_minutes < ttl_for_work_minutes(work_s):
            # the instance outlives the work CaRE planned; a longer lifetime from the pool, deployment or run is kept
            self._ttl_raised_from, self.ttl_minutes = self.ttl_minutes, ttl_for_work_minutes(work_s)


def block_env_names(flow_run: Any, deployment: Any = None, work_pool: Any = None) -> set[str]:
    """The ``env`` names whose value a template reads from a Prefect block (``{{ prefect.blocks.secret.db }}``):
    Prefect has resolved them before the worker sees the job, so their values no longer look like
    what they are; the raw templates of the run, the deployment and the pool still say (review 55b M2).

    >>> from types import SimpleNamespace as S
    >>> sorted(block_env_names(S(job_variables={"env": {"DB_PW": "{{ prefect.blocks.secret.db }}", "STAGE": "prod"}})))
    ['DB_PW']
    """
    template = getattr(work_pool, "base_job_template", None) or {}
    props = ((template.get("variables") or {}).get("properties") or {}) if isinstance(template, Mapping) else {}
    sources = [(getattr(flow_run, "job_variables", None) or {}).get("env"), (getattr(deployment, "job_variables", None) or {}).get("env"),
               (props.get("env") or {}).get("default") if isinstance(props.get("env"), Mapping) else None,
               (template.get("job_configuration") or {}).get("env") if isinstance(template, Mapping) else None]
    return {str(k) for env in sources if isinstance(env, Mapping) for k, v in env.items() if "prefect.blocks." in str(v)}


def code_location_problem(deployment: Any) -> str | None:
    """Why a fresh EC2 instance may not find a deployment's flow code, or None.

    The instance has only what ``install`` pip-installs (and its AMI). A module entrypoint
    (``my_flows.nightly.nightly``, no ``:``) is imported from there; a pull step other than
    ``set_working_directory`` (``git_clone``, ``pull_from_s3``, ...) or a storage block fetches the
    code. A file entrypoint (``flows/nightly.py:nightly``) with neither is read from the deploying
    machine's directory (``prefect deploy``'s ``set_working_directory``, or the deployment's
    ``path``), which the instance lacks unless its AMI has it: the run would crash after boot and
    install.

    >>> from types import SimpleNamespace as D
    >>> code_location_problem(D(entrypoint="my_flows.nightly.nightly", pull_steps=[], path=None, storage_document_id=None)) is None
    True
    >>> step = {"prefect.deployments.steps.set_working_directory": {"directory": "/home/me/proj"}}
    >>> code_location_problem(D(name="prod", entrypoint="flows/etl.py:etl", pull_steps=[step], path=None, storage_document_id=None))[:80]
    "deployment 'prod' loads flows/etl.py:etl from /home/me/proj, a directory on the "
    >>> clone = {"prefect.deployments.steps.git_clone": {"repository": "https://example.org/r.git"}}
    >>> code_location_problem(D(name="prod", entrypoint="flows/etl.py:etl", pull_steps=[step, clone], path=None, storage_document_id=None)) is None
    True
    """
    if deployment is None or getattr(deployment, "storage_document_id", None):
        return None
    entrypoint = str(getattr(deployment, "entrypoint", None) or "")
    if not entrypoint or ":" not in entrypoint:  # a module path: imported from what `install` put on the instance
        return None
    steps = [step for step in getattr(deployment, "pull_steps", None) or [] if isinstance(step, Mapping) and step]
    if any(not str(next(iter(step))).endswith("set_working_directory") for step in steps):
        return None  # a step that fetches the code (or one CaRE cannot judge)
    dirs = [str((step[next(iter(step))] or {}).get("directory", "")) for step in steps]
    where = next((d for d in reversed(dirs) if d), None) or getattr(deployment, "path", None) or "the directory it was deployed from"
    return (f"deployment {getattr(deployment, 'name', '?')!r} loads {entrypoint} from {where}, a directory on the machine it was "
            "deployed from, which a fresh EC2 instance does not have (unless its AMI does): the run will crash after the instance "
            "booted. Deploy with a module entrypoint (to_deployment(..., entrypoint_type=EntrypointType.MODULE_PATH)) and name the "
            "package in install, or add a git_clone / pull_from_s3 pull step (docs/AWS.md section 1)")


RUN_SETTINGS = frozenset({
    "PREFECT_API_URL", "PREFECT_API_ENABLE_HTTP2", "PREFECT_API_REQUEST_TIMEOUT", "PREFECT_API_TLS_INSECURE_SKIP_VERIFY",
    "PREFECT_CLIENT_CSRF_SUPPORT_ENABLED", "PREFECT_CLIENT_MAX_RETRIES", "PREFECT_CLIENT_RETRY_EXTRA_CODES",
    "PREFECT_CLIENT_RETRY_JITTER_FACTOR", "PREFECT_CLIENT_SERVER_VERSION_CHECK_ENABLED", "PREFECT_LOGGING_LEVEL",
})
"""The worker's own Prefect settings a run on an instance gets: how to reach the API (not the key,
the auth string or custom headers, which come from secrets) and the log level. Others stay on the
worker's host; the worker logs their names."""


class CareEC2Variables(BaseVariables):
    """The base job template's variables (what a deployment or a run's job_variables may set)."""

    region: str = _f("region", "eu-north-1")
    instance_type: str = _f("instance_type", "t3.micro")
    fallback_instance_types: list[str] = _f("fallback_instance_types", default_factory=list)
    fallback_regions: list[str] = _f("fallback_regions", default_factory=list)
    network_by_region: dict[str, dict[str, list[str]]] = _f("network_by_region", default_factory=dict)
    image_id: Optional[str] = _f("image_id")
    image_id_by_region: dict[str, str] = _f("image_id_by_region", default_factory=dict)
    image_ssm_parameter: Optional[str] = _f("image_ssm_parameter")
    subnet_id: Optional[str] = _f("subnet_id")
    fallback_subnet_ids: list[str] = _f("fallback_subnet_ids", default_factory=list)
    security_group_ids: list[str] = _f("security_group_ids", default_factory=list)
    iam_instance_profile: Optional[str] = _f("iam_instance_profile")
    key_name: Optional[str] = _f("key_name")
    ttl_minutes: int = _f("ttl_minutes", 180, ge=1)
    install: str = _f("install", "care-flows")
    associate_public_ip: bool = _f("associate_public_ip", False)
    api_key_secret: Optional[str] = _f("api_key_secret")
    api_auth_string_secret: Optional[str] = _f("api_auth_string_secret")
    aws_credentials: AwsCredentials = Field(default_factory=AwsCredentials, title="AWS Credentials", description=_DESC["aws_credentials"])
    final_grace_s: float = _f("final_grace_s", 120.0, ge=0)
    poll_interval_s: float = _f("poll_interval_s", 10.0, gt=0)
    max_poll_interval_s: float = _f("max_poll_interval_s", 60.0, gt=0)


class CareEC2WorkerResult(BaseWorkerResult):
    """How a flow run's instance ended: ``identifier`` is ``region:instance-id``."""

    region: str = ""
    instance_id: str = ""
    instance_type: str = ""
    reason: str = ""
    attempts: list[dict[str, Any]] = Field(default_factory=list)


def parse_identifier(identifier: str) -> tuple[str, str]:
    """``("eu-north-1", "i-0abc")`` from ``"eu-north-1:i-0abc"``.

    >>> parse_identifier("eu-north-1:i-0abc")
    ('eu-north-1', 'i-0abc')
    """
    region, sep, instance_id = str(identifier).partition(":")
    if not sep or not instance_id.startswith("i-"):
        raise ConfigError(f"infrastructure id {identifier!r} is not 'region:instance-id'")
    return region, instance_id


def _known_secrets(configuration: CareEC2JobConfiguration) -> list[str]:
    """The secret values this worker can see. The ONE place SecretStr values are unwrapped."""
    values: list[str] = [str(v) for k, v in (configuration.env or {}).items()
                         if v and (((reason := secret_reason(k, str(v))) and (reason != "not a valid variable name" or is_secret_value(str(v))))
                                   or k in configuration._from_blocks)]
    try:
        from prefect.settings import get_current_settings

        api = get_current_settings().api
        for secret in (api.key, getattr(api, "auth_string", None)):
            if secret is not None:
                values.append(secret.get_secret_value() if hasattr(secret, "get_secret_value") else str(secret))
    except Exception:  # noqa: BLE001 - settings shape differs between versions
        pass
    creds = configuration.aws_credentials
    for attr in ("aws_secret_access_key", "aws_session_token"):
        secret = getattr(creds, attr, None) if creds is not None else None
        if secret is not None:
            values.append(secret.get_secret_value() if hasattr(secret, "get_secret_value") else str(secret))
    return values


def _deployment_name(configuration: CareEC2JobConfiguration, flow_run: "FlowRun") -> str:
    labels = configuration.labels or {}
    flow_name = labels.get("prefect.io/flow-name")
    dep_name = labels.get("prefect.io/deployment-name")
    if dep_name:
        return f"{flow_name}/{dep_name}" if flow_name else dep_name
    return str(flow_run.deployment_id or "-")


def _api_url(env: dict[str, Any]) -> str | None:
    api_url = env.get("PREFECT_API_URL")
    if not api_url:
        from prefect.settings import PREFECT_API_URL

        api_url = PREFECT_API_URL.value()
    return api_url or None


def api_url_problem(api_url: str | None) -> str | None:
    """Why a run on an EC2 instance cannot reach the Prefect API at ``api_url``, or ``None``.

    >>> api_url_problem("https://prefect.internal:4200/api") is None
    True
    >>> api_url_problem("http://127.0.0.1:4200/api")
    'PREFECT_API_URL http://127.0.0.1:4200/api is a loopback address: an EC2 instance cannot reach it, so its run will crash; ...'
    """
    import ipaddress
    from urllib.parse import urlsplit

    fix = ("serve the API on an address the instances can reach (e.g. prefect server start --host 0.0.0.0 on a host in their VPC, "
           "or Prefect Cloud) and set PREFECT_API_URL to it (docs/AWS.md section 1)")
    if not api_url:
        return f"PREFECT_API_URL is not set, so the worker uses a temporary local server an EC2 instance cannot reach; {fix}"
    try:
        host = (urlsplit(api_url).hostname or "").lower()
    except ValueError:
        return None
    try:
        ip = ipaddress.ip_address(host)
        local = ip.is_loopback or ip.is_link_local or ip.is_unspecified
    except ValueError:
        local = host == "localhost" or host.endswith(".localhost")
    if not local:
        return None
    shown = mask_url(api_url)
    return f"PREFECT_API_URL {shown} is a loopback address: an EC2 instance cannot reach it, so its run will crash; {fix}"


def describe_secret(secret: str) -> str:
    """Where a secret reference (a job variable ``api_key_secret`` / ``api_auth_string_secret``) points, in
    words: a Secrets Manager ARN holds ``:secret:``, which Prefect's console (Rich, emoji codes on) prints as
    an emoji, so the worker's log line showed a wrong ARN. Gives the secret's name, then the service and,
    for an ARN, its region and account; a name is read in the region the instance runs in.

    >>> describe_secret("arn:aws:secretsmanager:eu-north-1:123456789012:secret:care/prefect-api-key-zPgfLX")
    'care/prefect-api-key-zPgfLX (Secrets Manager secret in eu-north-1, account 123456789012)'
    >>> describe_secret("arn:aws:ssm:eu-south-2:123456789012:parameter/care/prefect-auth")
    '/care/prefect-auth (SSM parameter in eu-south-2, account 123456789012)'
    >>> describe_secret("care/prefect-api-key"), describe_secret("/care/prefect-auth")
    ("care/prefect-api-key (Secrets Manager secret in the instance's region)", "/care/prefect-auth (SSM parameter in the instance's region)")
    """
    text = str(secret).strip()
    service, name = secret_source(text)
    what = "SSM parameter" if service == "ssm" else "Secrets Manager secret"
    parts = text.split(":")
    if text.startswith("arn:") and len(parts) >= 6:
        if service != "ssm":
            name = text.split(":secret:", 1)[1] if ":secret:" in text else parts[-1]
        return f"{name} ({what} in {parts[3] or '?'}, account {parts[4] or '?'})"
    return f"{name} ({what} in the instance's region)"


NETWORK_KEYS = ("subnet_ids", "security_group_ids")
"""The keys of a ``network_by_region`` entry."""


def _check_network_by_region(configuration: CareEC2JobConfiguration, log: Any = None) -> None:
    """A one-line error for a ``network_by_region`` entry a launch would silently ignore (a misspelt
    region or key: the fallback went into the default VPC and security group); a warning for a region
    the job never launches in (neither ``region`` nor one of ``fallback_regions``)."""
    used = {configuration.region, *configuration.fallback_regions}
    for region, network in (configuration.network_by_region or {}).items():
        check_region(region, name="job variable network_by_region")
        unknown = sorted(set(network or {}) - set(NETWORK_KEYS))
        if unknown:
            raise ConfigError(f"job variable network_by_region[{region!r}] has key(s) {', '.join(map(repr, unknown))}; "
                              f"use {' and '.join(NETWORK_KEYS)} (lists of ids)")
        if region not in used and log is not None:
            log.warning("network_by_region names %s, which is neither the job's region nor one of its fallback_regions: "
                        "it is not used", region)


def _check_secret_references(configuration: CareEC2JobConfiguration) -> None:
    """A one-line error, before any instance exists, for an ``api_key_secret`` / ``api_auth_string_secret``
    ARN that is malformed or names no real region (review 55b M6: the instance booted, failed to read
    the key and powered off, the reason only in a terminated instance's log)."""
    for variable in ("api_key_secret", "api_auth_string_secret"):
        ref = str(getattr(configuration, variable) or "").strip()
        if not ref.startswith("arn:"):
            continue
        try:
            check_secret_arn(ref)
        except ConfigError as exc:
            raise ConfigError(f"job variable {variable}: {exc}") from None
        check_region(secret_region(ref) or "", name=f"job variable {variable} (the ARN's region)")


def build_launch_spec(flow_run: "FlowRun", configuration: CareEC2JobConfiguration, *, log: Any = None) -> LaunchSpec:
    """The :class:`LaunchSpec` of a prepared job configuration (regions and user data checked)."""
    check_region(configuration.region, name="job variable region")
    for region in [*configuration.fallback_regions, *configuration.image_id_by_region]:
        check_region(region, name=f"job variable {'fallback_regions' if region in configuration.fallback_regions else 'image_id_by_region'}")
    _check_network_by_region(configuration, log)
    _check_secret_references(configuration)
    env = dict(configuration.env or {})
    api_url = _api_url(env)
    dropped = {name: why for name, value in env.items() if value is not None and (why := secret_reason(name, value))}
    for name in configuration._from_blocks:  # a Secret block's value under a plain name (DB_PW): never in user data
        dropped.setdefault(name, "its value comes from a Prefect block")
        env.pop(name, None)
    for variable, secret in (("PREFECT_API_KEY", configuration.api_key_secret), ("PREFECT_API_AUTH_STRING", configuration.api_auth_string_secret)):
        if secret:
            dropped.pop(variable, None)
        if secret and log is not None:
            log.info("%s is read on the instance from %s, not written to user data", variable, describe_secret(secret))
    if log is not None and dropped:
        log.warning("env not written to the instance's user data, which anyone who may describe the instance can read: %s; "
                    "the run will not have them: read secrets in the flow from Secrets Manager or SSM (docs/AWS.md section 3); "
                    "the Prefect API key goes by name in api_key_secret, a basic-auth string in api_auth_string_secret",
                    ", ".join(f"{name} ({why})" for name, why in sorted(dropped.items())))
    if log is not None and configuration._withheld:
        log.info("worker settings not passed to the instance: %s (set any the run needs in the job's env)", ", ".join(configuration._withheld))
    if log is not None:
        from prefect.settings import get_current_settings

        api = get_current_settings().api
        for value, variable, name in ((api.key, "api_key_secret", "PREFECT_API_KEY"), (api.auth_string, "api_auth_string_secret", "PREFECT_API_AUTH_STRING")):
            if value is not None and not getattr(configuration, variable):
                log.warning("the worker has %s but the job has no %s: the run on the instance will not authenticate to "
                            "the Prefect API; store it in Secrets Manager or SSM and set the %s job variable", name, variable, variable)
    secrets = _known_secrets(configuration)
    flow_run_id = str(flow_run.id)

    def user_data(region: str, instance_type: str | None = None) -> str:
        def render(env: Mapping[str, str | None], api_url: str | None, install: str, command: str) -> str:
            return render_user_data(
                flow_run_id=flow_run_id,
                api_url=api_url,
                env=env,
                install=install,
                api_key_secret=configuration.api_key_secret,
                api_auth_string_secret=configuration.api_auth_string_secret,
                region=region,
                ttl_minutes=configuration.ttl_minutes,
                command=command,
                instance_type=instance_type or configuration.instance_type,
            )

        script = render(env, api_url, configuration.install, configuration.command or "prefect flow-run execute")
        # only what the env put in counts: a harmless value of a secret-looking name (AUTH_PROVIDER=prefect) may also be a
        # word of the rest of the script; the API URL and install spec are checked for credentials by render_user_data
        # the template has the default command: a known secret in the command counts (review 55b M1)
        assert_no_secrets(script, secrets, template=render({}, api_url, configuration.install, "prefect flow-run execute"))
        return script

    user_data(configuration.region)  # fail fast, before any instance exists
    subnets = tuple(s for s in [configuration.subnet_id, *configuration.fallback_subnet_ids] if s)
    return LaunchSpec(
        flow_run_id=flow_run_id,
        region=configuration.region,
        instance_type=configuration.instance_type,
        deployment=_deployment_name(configuration, flow_run),
        user_data=user_data,
        ttl_minutes=configuration.ttl_minutes,
        fallback_instance_types=tuple(configuration.fallback_instance_types),
        fallback_regions=tuple(configuration.fallback_regions),
        subnet_ids=subnets,
        security_group_ids=tuple(configuration.security_group_ids),
        network_by_region=configuration.network_by_region,
        image_id=configuration.image_id,
        image_id_by_region=dict(configuration.image_id_by_region),
        image_parameter=configuration.image_ssm_parameter,
        iam_instance_profile=configuration.iam_instance_profile,
        key_name=configuration.key_name,
        associate_public_ip=configuration.associate_public_ip,
        name=f"care-{configuration.name or flow_run.name}"[:128],
        submission_key=str(getattr(flow_run, "run_count", 0) or 0),
    )


def planned_work_s(flow_run: "FlowRun") -> float | None:
    """Seconds of work CaRE planned for this run (its ``care`` job variable: the plan's segments, less
    the work earlier segments did), or ``None`` for a run CaRE did not plan.

    >>> from types import SimpleNamespace
    >>> plan = {"start": "2026-01-01T00:00:00+00:00", "end": "2026-01-01T04:00:00+00:00",
    ...         "segments": [["2026-01-01T00:00:00+00:00", "2026-01-01T04:00:00+00:00"]]}
    >>> planned_work_s(SimpleNamespace(job_variables={"care": {"plan": plan, "work_done_s": 3600.0}}))
    10800.0
    >>> planned_work_s(SimpleNamespace(job_variables={})) is None
    True
    """
    care = (getattr(flow_run, "job_variables", None) or {}).get("care")
    plan = care.get("plan") if isinstance(care, Mapping) else None
    if not isinstance(plan, Mapping):
        return None
    try:
        spans = plan.get("segments") or [[plan["start"], plan["end"]]]
        work = sum((datetime.fromisoformat(str(b)) - datetime.fromisoformat(str(a))).total_seconds() for a, b in spans)
        done = float(care.get("work_done_s") or 0.0)
    except (KeyError, TypeError, ValueError):
        return None
    return max(0.0, work - done) if work > 0 else None


class CareEC2Worker(BaseWorker[CareEC2JobConfiguration, CareEC2Variables, CareEC2WorkerResult]):
    """A Prefect worker that runs each flow run on its own EC2 instance.

    Injection points for tests (plain attributes, set after construction): ``clients_factory``
    (job configuration -> :class:`AwsClients`), ``prefect_client`` (an object with async
    ``read_flow_run`` and ``set_flow_run_state``; default: the worker's client),
    ``sync_sleep`` (launch back-off), ``async_sleep`` (watch loop), ``now`` and ``rng``.

    Start it with ``prefect worker start --pool care-eu --type care-ec2``; a pool's job template
    offers these variables (among others):

    >>> template = CareEC2Worker.get_default_base_job_template()
    >>> CareEC2Worker.type, [v for v in ("region", "instance_type", "fallback_regions") if v in template["variables"]["properties"]]
    ('care-ec2', ['region', 'instance_type', 'fallback_regions'])
    """

    type = "care-ec2"
    job_configuration = CareEC2JobConfiguration
    job_configuration_variables = CareEC2Variables
    _description = "Run each flow run on its own right-sized EC2 instance in the region CaRE chose; terminated when the run ends."
    _display_name = "CaRE EC2"
    _documentation_url = "https://github.com/care-flows/care-flows/blob/main/docs/AWS.md"
    _logo_url = "https://cdn.sanity.io/images/3ugk85nk/production/d74b16fe84ce626345adf235a47008fea2869a60-225x225.png"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.clients_factory: Callable[[CareEC2JobConfiguration], AwsClients] = lambda c: AwsClients.from_credentials(c.aws_credentials)
        self.prefect_client: Any = None
        self.sync_sleep: Callable[[float], None] = time.sleep
        self.async_sleep: Callable[[float], Awaitable[None]] = anyio.sleep
        self.now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)
        self.rng = random.Random()

    def _prefect(self) -> Any:
        return self.prefect_client if self.prefect_client is not None else self.client

    async def run(
        self,
        flow_run: "FlowRun",
        configuration: CareEC2JobConfiguration,
        task_status: Optional[anyio.abc.TaskStatus[str]] = None,
    ) -> CareEC2WorkerResult:
        """Launch the run's instance, report it, watch it, terminate it.

        A set-up error at submission (a :class:`~care_flows.errors.CareError`: a misspelt job
        variable, no AWS credentials, an unreachable endpoint, no option EC2 accepted) is already one
        line saying what to fix. When Prefect submits the run (``task_status`` given), the worker
        logs that line, marks the run Crashed with it, reports the failure through ``task_status``
        (as Prefect's base worker does for an exception) and returns a failed result (status 1):
        the base worker would log the error with ``logger.exception``, i.e. with its traceback,
        in the worker's log and the run's. Any other exception (a bug) still goes to the base
        worker with its traceback. A direct call (no ``task_status``) gets the ``CareError`` raised.
        """
        log = self.get_flow_run_logger(flow_run)
        if configuration._code_problem:
            log.warning("%s", configuration._code_problem)
        try:
            if configuration._ttl_raised_from is not None:
                log.info("ttl_minutes raised from %d to %d to cover the %.0f min of work CaRE planned for flow run %s (a region target's "
                         "ttl_minutes is kept as it is)", configuration._ttl_raised_from, configuration.ttl_minutes,
                         (planned_work_s(flow_run) or 0.0) / 60, flow_run.id)
            clients = self.clients_factory(configuration)
            spec = build_launch_spec(flow_run, configuration, log=log)
            self._warn_api_url(_api_url(dict(configuration.env or {})))
            launched: LaunchResult = await anyio.to_thread.run_sync(
                partial(launch, spec, clients, sleep=self.sync_sleep, rng=self.rng, now=self.now(), log=log)
            )
        except CareError as exc:
            if task_status is None:
                raise
            return await self._submission_failed(flow_run, exc, log, task_status)
        if launched.fallback_reasons:
            log.warning("fell back to %s/%s: %s", launched.region, launched.instance_type, "; ".join(launched.fallback_reasons))
        if task_status is not None:
            task_status.started(launched.identifier)
        holder = [launched]
        code, reason = await self._watch(flow_run, configuration, launched, clients, log, spec=spec, holder=holder)
        launched = holder[-1]
        return CareEC2WorkerResult(
            identifier=launched.identifier,
            status_code=code,
            region=launched.region,
            instance_id=launched.instance_id,
            instance_type=launched.instance_type,
            reason=reason,
            attempts=[a.as_dict() for a in launched.attempts],
        )

    async def _submission_failed(self, flow_run: "FlowRun", exc: CareError, log: Any,
                                 task_status: anyio.abc.TaskStatus[Any]) -> CareEC2WorkerResult:
        """One line for a set-up error at submission, the run Crashed with it, a failed result.

        The Crashed message is the one Prefect's base worker gives a submission that raised
        (``Failed to submit flow run to infrastructure: <type>: <message>``). The base worker then
        proposes Crashed once more for the non-zero status; the server aborts that transition (the
        run is already final), so the run keeps this message; if marking it here failed, that
        proposal is what marks it."""
        what = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        reason = f"Failed to submit flow run to infrastructure: {what}"
        log.error("Failed to submit flow run '%s' to infrastructure: %s", flow_run.name, what)
        self._logger.debug("traceback of the submission error of flow run %s", flow_run.id, exc_info=exc)  # PREFECT_LOGGING_LEVEL=DEBUG
        try:
            await self._prefect().set_flow_run_state(flow_run.id, Crashed(message=reason))
        except Exception as failed:  # noqa: BLE001 - the base worker's Crashed proposal for the failed result still marks it
            log.warning("could not mark flow run %s crashed (%s: %s)", flow_run.id, type(failed).__name__, failed)
        task_status.started(exc)  # as the base worker does: the run did not start; no infrastructure id to record
        return CareEC2WorkerResult(identifier="", status_code=1, reason=reason,
                                   attempts=[a.as_dict() for a in getattr(exc, "attempts", None) or []])

    def _warn_api_url(self, api_url: str | None) -> None:
        """Once per worker and URL: a run on an instance cannot reach a loopback (or no) Prefect API."""
        problem = api_url_problem(api_url)
        warned: set[str] = self.__dict__.setdefault("_care_warned_urls", set())
        if problem and str(api_url) not in warned:
            warned.add(str(api_url))
            self._logger.warning(problem)

    async def _state_type(self, flow_run_id: UUID) -> StateType | None:
        try:
            run = await self._prefect().read_flow_run(flow_run_id)
        except Exception as exc:  # noqa: BLE001 - API unreachable: keep watching the instance
            self._logger.warning("could not read flow run %s: %s", flow_run_id, exc)
            return None
        return run.state.type if run.state is not None else None

    async def _terminate(self, clients: AwsClients, launched: LaunchResult, log: Any) -> None:
        ec2 = clients.ec2(launched.region)
        await anyio.to_thread.run_sync(partial(terminate_instance, ec2, launched.instance_id, sleep=self.sync_sleep, rng=self.rng))
        log.info("terminated %s", launched.identifier)

    async def _relaunch(self, flow_run: "FlowRun", spec: LaunchSpec, clients: AwsClients, launched: LaunchResult,
                        failed: set[tuple[str, str, str | None]], log: Any) -> LaunchResult:
        """Launch on the next option after ``launched`` died in ``pending`` for lack of capacity; report the new id."""
        fresh: LaunchResult = await anyio.to_thread.run_sync(
            partial(launch, spec, clients, sleep=self.sync_sleep, rng=self.rng, now=self.now(), log=log, exclude=sorted(failed, key=str))
        )
        fresh.attempts = [*launched.attempts, *fresh.attempts]
        log.warning("relaunched flow run %s on %s/%s: %s", flow_run.id, fresh.region, fresh.instance_type, fresh.identifier)
        update = getattr(self._prefect(), "update_flow_run", None)
        if update is not None:
            try:
                await update(flow_run.id, infrastructure_pid=fresh.identifier)
            except Exception as exc:  # noqa: BLE001
                log.warning("could not report the new instance %s of flow run %s (%s); cancelling it may not reach it", fresh.identifier, flow_run.id, exc)
        return fresh

    async def _watch(self, flow_run: "FlowRun", configuration: CareEC2JobConfiguration, launched: LaunchResult, clients: AwsClients, log: Any,
                     *, spec: LaunchSpec | None = None, holder: list[LaunchResult] | None = None) -> tuple[int, str]:
        holder = holder if holder is not None else [launched]
        ec2 = clients.ec2(launched.region)
        interval = configuration.poll_interval_s
        terminate = True
        failed_polls = 0  # failed checks of the instance in a row
        work_s = planned_work_s(flow_run)
        if work_s is not None and configuration.ttl_minutes * 60 < work_s:
            from care_flows.orchestration.targets import ttl_for_work_minutes

            log.warning("ttl_minutes %d is shorter than the %.0f min of work CaRE planned for flow run %s: %s will be terminated "
                        "(and the run crashed) at its TTL before the run can finish; set ttl_minutes to at least %d (the plan's work "
                        "with a margin) in the region target's job_variables, or drop it there so the worker covers the planned work", configuration.ttl_minutes, work_s / 60, flow_run.id,
                        launched.identifier, ttl_for_work_minutes(work_s))
        watch_started = self.now()
        final_at: datetime | None = None  # when the watch saw the flow run final (the grace period runs from here)
        final_reason = ""
        seen_running = False
        failed: set[tuple[str, str, str | None]] = set()
        try:
            while True:
                if final_at is None:
                    state = await self._state_type(flow_run.id)
                    if state in FINAL_STATES:
                        final_reason = f"flow run {state.value.lower()}"
                        if configuration.final_grace_s <= 0:
                            return 0, final_reason
                        final_at = self.now()
                        log.info("%s; %s has %.0f s (final_grace_s) to run the state hooks, send its last logs and power itself off",
                                 final_reason, launched.identifier, configuration.final_grace_s)
                    elif state == StateType.CANCELLING:
                        try:
                            await self._terminate(clients, launched, log)
                        except Exception as exc:  # noqa: BLE001 - EC2 refused or failed: the run stays Cancelling, try at the next poll
                            log.warning("could not terminate %s for the cancellation of flow run %s (%s: %s); trying again at the next poll",
                                        launched.identifier, flow_run.id, error_code(exc) or type(exc).__name__, error_message(exc))
                            state = None
                    if state == StateType.CANCELLING:
                        terminate = False
                        try:
                            await self._prefect().set_flow_run_state(flow_run.id, Cancelled(message=f"Cancelled: CaRE terminated {launched.identifier}."), force=True)
                        except Exception:  # noqa: BLE001
                            log.exception("could not mark flow run %s cancelled", flow_run.id)
                        return 0, "flow run cancelled"
                try:
                    inst, why_code, why = await anyio.to_thread.run_sync(partial(instance_status, ec2, launched.instance_id))
                    failed_polls = 0
                except Exception as exc:  # noqa: BLE001 - a failed poll is not a dead instance: never terminate a run's instance for it
                    failed_polls += 1
                    what = f"{error_code(exc) or type(exc).__name__}: {error_message(exc)}"
                    transient = classify(exc) == "throttle" or is_network_error(exc)
                    log.warning("could not check %s (%s)%s; checking again later (%d failed in a row)", launched.identifier, what,
                                "" if transient else ", an error CaRE does not know as transient", failed_polls)
                    if final_at is None and failed_polls >= MAX_FAILED_POLLS:
                        terminate = False  # it cannot be seen; it may still be running the flow
                        reason = (f"CaRE stopped watching {launched.identifier}: {failed_polls} checks of it failed in a row (last: {what}); "
                                  f"the instance was not terminated: its own TTL shutdown at {launched.expires_at.isoformat()} and "
                                  f"care aws reap bound it; the run may still report its own final state")
                        await self._crash(flow_run, reason, log)
                        return 1, reason
                    inst, why_code, why = "unknown", "", ""
                if inst == "missing" and (self.now() - watch_started).total_seconds() < MISSING_GRACE_S:
                    inst = "not visible yet"  # eventual consistency right after RunInstances
                seen_running = seen_running or inst == "running"
                if final_at is not None:
                    if inst in DEAD_INSTANCE_STATES:
                        terminate = inst in ("stopping", "stopped")  # else it powered itself off after the run, as the user data does
                        log.info("%s is %s after the %s", launched.identifier, inst, final_reason)
                        return 0, final_reason
                    waited = (self.now() - final_at).total_seconds()
                    if waited >= configuration.final_grace_s or self.now() >= launched.expires_at:
                        log.info("%s is still %s %.0f s after the %s; terminating it", launched.identifier, inst, waited, final_reason)
                        return 0, final_reason  # terminated in finally
                    await self.async_sleep(min(interval, configuration.final_grace_s - waited))
                    interval = min(interval * 1.5, configuration.max_poll_interval_s)
                    continue
                if inst in DEAD_INSTANCE_STATES:
                    state = await self._state_type(flow_run.id)
                    if state in FINAL_STATES:
                        return 0, f"flow run {state.value.lower()}"
                    if state in HANDED_BACK_STATES:  # suspended (or handed back): done with the instance, the run goes on later
                        terminate = inst in ("stopping", "stopped")  # else it powered itself off, as the user data does
                        log.info("%s is %s and the %s: the run no longer needs it (not a crash)", launched.identifier, inst, HANDED_BACK_STATES[state])
                        return 0, HANDED_BACK_STATES[state]
                    reason = f"instance {launched.identifier} is {inst} before the flow run finished"
                    if why:
                        hint = STATE_REASON_HINTS.get(why_code)
                        reason += f" (EC2: {why}{'; ' + hint if hint else ''})"
                    if (spec is not None and why_code == "Server.InsufficientInstanceCapacity" and not seen_running
                            and state not in (StateType.RUNNING, StateType.CANCELLING)):
                        failed.add((launched.region, launched.instance_type, launched.subnet_id))
                        launched.attempts.append(Attempt(launched.region, launched.instance_type, launched.subnet_id, "capacity", why_code, why))
                        log.warning("%s; trying the next option", reason)
                        try:
                            launched = await self._relaunch(flow_run, spec, clients, launched, failed, log)
                        except CareError as exc:
                            reason = f"{reason}; no other option could be launched: {exc}"
                            terminate = False
                            await self._crash(flow_run, reason, log)
                            return 1, reason
                        holder.append(launched)
                        ec2 = clients.ec2(launched.region)
                        watch_started, seen_running, interval = self.now(), False, configuration.poll_interval_s
                        continue
                    await self._crash(flow_run, reason, log)
                    return 1, reason
                if self.now() >= launched.expires_at:
                    reason = f"instance {launched.identifier} reached its TTL of {configuration.ttl_minutes} min"
                    terminate = False
                    try:
                        await self._terminate(clients, launched, log)
                    except Exception as exc:  # noqa: BLE001 - its own shutdown -h +TTL and the reaper still bound it
                        log.warning("could not terminate %s (%s); its own TTL shutdown and care aws reap will", launched.identifier, error_message(exc))
                    await self._crash(flow_run, reason, log)
                    return 1, reason
                await self.async_sleep(interval)
                interval = min(interval * 1.5, configuration.max_poll_interval_s)
        except anyio.get_cancelled_exc_class():
            terminate = False  # the worker is stopping: the run goes on; TTL and the reaper bound it
            log.warning("worker stopping; %s keeps running the flow run until it ends or its TTL", launched.identifier)
            raise
        finally:
            if terminate:
                with anyio.CancelScope(shield=True):
                    try:
                        await self._terminate(clients, launched, log)
                    except Exception:  # noqa: BLE001
                        log.exception("could not terminate %s; the reaper will", launched.identifier)

    async def _crash(self, flow_run: "FlowRun", reason: str, log: Any) -> None:
        log.error(reason)
        try:
            await self._prefect().set_flow_run_state(flow_run.id, Crashed(message=reason))
        except Exception:  # noqa: BLE001
            log.exception("could not mark flow run %s crashed", flow_run.id)

    async def kill_infrastructure(self, infrastructure_pid: str, configuration: CareEC2JobConfiguration, grace_seconds: int = 30) -> None:
        """Terminate the instance ``region:instance-id`` (only instances CaRE tagged)."""
        try:
            region, instance_id = parse_identifier(infrastructure_pid)
        except ConfigError as exc:
            raise InfrastructureNotAvailable(str(exc)) from exc
        clients = self.clients_factory(configuration)
        ec2 = clients.ec2(region)

        def kill() -> None:
            try:
                resp = _retrying(lambda: ec2.describe_instances(InstanceIds=[instance_id]), what=f"describe {instance_id}",
                                 sleep=self.sync_sleep, rng=self.rng, max_retries=6)
            except Exception as exc:  # noqa: BLE001
                if "InvalidInstanceID" in str(getattr(exc, "response", {}).get("Error", {}).get("Code", "")):
                    raise InfrastructureNotFound(f"instance {infrastructure_pid} not found") from exc
                raise
            insts = [i for r in resp.get("Reservations", []) for i in r.get("Instances", [])]
            if not insts or insts[0]["State"]["Name"] == "terminated":
                raise InfrastructureNotFound(f"instance {infrastructure_pid} not found or already terminated")
            tags = {t["Key"]: t["Value"] for t in insts[0].get("Tags", [])}
            if TAG_FLOW_RUN not in tags:
                raise InfrastructureNotAvailable(f"instance {infrastructure_pid} has no {TAG_FLOW_RUN} tag; CaRE only terminates its own instances")
            terminate_instance(ec2, instance_id, sleep=self.sync_sleep, rng=self.rng)

        await anyio.to_thread.run_sync(kill)
        self._logger.info("terminated %s", infrastructure_pid)

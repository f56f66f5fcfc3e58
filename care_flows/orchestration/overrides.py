"""Per-deployment and per-run policy overrides: the ``care_overrides`` job variable.

The policy in ``@care`` (or the controller's) is the application's: what its runs usually need.
A team deploying the same flow, or the person triggering one run, may weigh things differently
(cost before carbon this month, a 2 h deadline for this backfill, Sweden only). They say so in
a ``care_overrides`` job variable: a mapping of :class:`~care_flows.policy.CarePolicy` fields (or
its JSON text), merged over the application's policy for that run:

- on a deployment, in ``prefect.yaml`` (``job_variables: {care_overrides: {...}}``): every run of
  that deployment;
- on one run: the Prefect UI's *Custom run* (job variables), ``prefect deployment run NAME
  --job-variable 'care_overrides={"priorities": ["cost", "carbon"]}'``, or
  ``run_deployment(..., job_variables={"care_overrides": {...}})``.

A run's overrides win over its deployment's, field by field; a field replaces the policy's,
except ``targets``, merged region by region (as ``@care(targets=...)`` does). Three fields carry
their meaning with them: ``priorities`` without ``weights`` drops the policy's ``weights`` (which
would otherwise win and make the new order do nothing); ``home_region`` without ``regions`` drops
the old home from the candidates (it was a candidate as the home); a derived field (``signal``
from ``carbon_source``) follows the overrides. The merged policy is validated like any policy (a
misspelt field or a bad value is one :class:`~care_flows.errors.ConfigError` line naming it). A
duration or a need given explicitly is used as given: ``expected_duration`` in the overrides is
not replaced by the duration learned from past runs (and such a run, a backfill say, is not
recorded in that history), nor are ``vcpu`` / ``memory_gib`` by the need learned from the usage
history (:func:`gives_duration`, :func:`gives_need`). The decision artifact lists the overrides it
planned with (:func:`describe_overrides`, at most :data:`DESCRIBE_LIMIT` characters).

>>> from care_flows.policy import CarePolicy
>>> app = CarePolicy(regions=["eu-north-1"], priorities=["carbon", "cost"], deadline_within="12h")
>>> given = overrides_from({"care_overrides": {"deadline_within": "2h"}},     # the deployment's
...                        {"care_overrides": '{"priorities": ["cost", "carbon"]}'})  # the run's
>>> policy = apply_overrides(app, given)
>>> [p.value for p in policy.priorities], policy.deadline_within, policy.regions
(['cost', 'carbon'], datetime.timedelta(seconds=7200), ['eu-south-2', 'eu-north-1'])
>>> describe_overrides(given)
'deadline_within="2h", priorities=["cost", "carbon"]'
>>> weighted = CarePolicy(regions=["eu-north-1"], weights={"carbon": 1.0})
>>> apply_overrides(weighted, {"priorities": ["cost"]}).weights is None   # the new order decides
True
>>> moved = apply_overrides(CarePolicy(home_region="eu-south-2", regions=[]), {"home_region": "eu-north-1"})
>>> moved.candidate_regions   # not eu-south-2: it was a candidate only as the home
['eu-north-1']
>>> apply_overrides(app, {"priority": ["cost"]})
Traceback (most recent call last):
...
care_flows.errors.ConfigError: invalid care_overrides job variable: unknown field 'priority'; did you mean 'priorities'?
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from care_flows.errors import ConfigError
from care_flows.policy import CarePolicy, load_policy

__all__ = ["OVERRIDES_VARIABLE", "DESCRIBE_LIMIT", "overrides_from", "apply_overrides", "describe_overrides", "gives_duration",
           "gives_need", "NEED_GIVEN", "misspelt_variables", "mask_secrets", "mask_text", "secret_values"]

OVERRIDES_VARIABLE = "care_overrides"
DESCRIBE_LIMIT = 300
NEED_GIVEN = f"given in {OVERRIDES_VARIABLE}"

_HOW = ('give a mapping of CarePolicy fields, e.g. care_overrides={"priorities": ["cost", "carbon"]} '
        "(docs/POLICY.md lists the fields)")


def _one(value: Any, where: str) -> dict[str, Any]:
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"invalid {OVERRIDES_VARIABLE} job variable{where}: not valid JSON "
                              f"(line {exc.lineno}, column {exc.colno}: {exc.msg}); {_HOW}") from None
    if not isinstance(value, Mapping):
        raise ConfigError(f"invalid {OVERRIDES_VARIABLE} job variable{where}: {type(value).__name__} {value!r}, "
                          f"not a mapping; {_HOW}")
    return {str(k): v for k, v in value.items()}


def _above(vcpu: Any, max_vcpu: Any) -> bool:
    """Whether an override's ``vcpu`` is a number above a ``max_vcpu`` given earlier (a bad value: the
    policy's validation says what is wrong with it).

    >>> _above(16, 8), _above(4, 8), _above("abc", 8), _above(16, None)
    (True, False, False, False)
    """
    try:
        return max_vcpu is not None and float(vcpu) > float(max_vcpu)
    except (TypeError, ValueError):
        return False


def overrides_from(*job_variables: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``care_overrides`` of each job-variable mapping merged in order (later ones win, field
    by field): pass the deployment's, then the run's. ``{}`` when none has any.

    >>> overrides_from(None, {"region": "eu-north-1"})
    {}
    >>> overrides_from({"care_overrides": {"vcpu": 4, "memory_gib": 16}}, {"care_overrides": {"vcpu": 2}})
    {'vcpu': 2, 'memory_gib': 16}
    >>> overrides_from({"care_overrides": {"vcpu": 4}}, {"care_overrides": None})   # a run that wants none of them
    {}

    A later layer's ``priorities`` without ``weights`` drops an earlier layer's ``weights``, which would
    otherwise win and make the new order do nothing (as :func:`apply_overrides` does for the policy's):

    >>> overrides_from({"care_overrides": {"weights": {"cost": 0.8, "carbon": 0.2}}}, {"care_overrides": {"priorities": ["carbon"]}})
    {'weights': None, 'priorities': ['carbon']}
    """
    merged: dict[str, Any] = {}
    for variables in job_variables:
        if variables and OVERRIDES_VARIABLE in variables and variables[OVERRIDES_VARIABLE] is None:
            merged = {}  # an explicit null (a run's): the application's policy, without the earlier overrides
        elif variables:
            layer = _one(variables.get(OVERRIDES_VARIABLE), "")
            if "priorities" in layer and "weights" not in layer and merged.get("weights") is not None:
                merged["weights"] = None
            if "vcpu" in layer and "max_vcpu" not in layer and _above(layer["vcpu"], merged.get("max_vcpu")):
                merged.pop("max_vcpu")  # a run's vcpu above the deployment's max_vcpu, as apply_overrides does (45h M2, 45i L3)
            merged.update(layer)
    return merged


def misspelt_variables(*job_variables: Mapping[str, Any] | None) -> list[str]:
    """Job variable names that look like a misspelt ``care_overrides`` (Prefect accepts any name, so
    a typo would otherwise be ignored without a word).

    >>> misspelt_variables({"care_override": {}}, {"CARE-OVERRIDES": {}, "care_overrides": {}, "region": "x", "care": {}})
    ['care_override', 'CARE-OVERRIDES']
    """
    import difflib

    found: list[str] = []
    for variables in job_variables:
        for name in variables or {}:
            norm = str(name).lower().replace("-", "_").replace(" ", "_")
            if name != OVERRIDES_VARIABLE and name not in found and (
                    norm == OVERRIDES_VARIABLE or difflib.SequenceMatcher(None, norm, OVERRIDES_VARIABLE).ratio() >= 0.85):
                found.append(str(name))
    return found


def apply_overrides(policy: CarePolicy, overrides: Mapping[str, Any]) -> CarePolicy:
    """``policy`` with ``overrides`` merged over the fields it was given (fields derived from others,
    such as ``signal`` from ``carbon_source``, follow the overrides), validated as a whole."""
    if not overrides:
        return policy
    given = dict(overrides)
    if "priorities" in given and "weights" not in given:
        given["weights"] = None
    if "vcpu" in given and "max_vcpu" not in given and _above(given["vcpu"], policy.max_vcpu):
        given["max_vcpu"] = None  # a run's vcpu above the app's max_vcpu: the cap is the app's, not the run's (45f M1, 45g L2)
    if "home_region" in given and "regions" not in given and "regions" in policy.model_fields_set:
        given["regions"] = [r for r in policy.regions if r != policy.home_region]
    if isinstance(given.get("targets"), Mapping):
        given["targets"] = {**{r: t.model_dump() for r, t in policy.targets.items()}, **given["targets"]}
    try:
        return load_policy(policy, **given)
    except ConfigError as exc:
        reason = str(exc).removeprefix("invalid CaRE policy: ")
        raise ConfigError(f"invalid {OVERRIDES_VARIABLE} job variable: {reason}") from None


def describe_overrides(overrides: Mapping[str, Any]) -> str:
    """``field=JSON value`` pairs, for logs, the decision artifact and the controller's reason;
    cut at :data:`DESCRIBE_LIMIT` characters (the marker keeps them whole).

    Environment values under secret-looking names (``..._TOKEN``, ``..._KEY``, ...: a region
    target's ``job_variables.env`` may carry them) and URLs with credentials are shown as ``***``:
    these lines go to logs and artifacts (the worker keeps such values out of user data the same way).

    >>> describe_overrides({"usage_key": "x" * 400}).endswith("... (412 characters)")
    True
    >>> describe_overrides({"targets": {"eu-north-1": {"job_variables": {"env": {"API_TOKEN": "s3cret", "STAGE": "prod"}}}}})
    'targets={"eu-north-1": {"job_variables": {"env": {"API_TOKEN": "***", "STAGE": "prod"}}}}'
    """
    text = ", ".join(f"{k}={json.dumps(_masked(k, v), default=str)}" for k, v in overrides.items())
    return text if len(text) <= DESCRIBE_LIMIT else f"{text[:DESCRIBE_LIMIT]}... ({len(text)} characters)"


def mask_secrets(value: Any) -> Any:
    """A copy of ``value`` (job variables, overrides) fit to print: entries of any ``env`` mapping
    under secret-looking names and URLs with credentials, at any depth, are ``***`` (the rule of
    :func:`describe_overrides` and of the worker's user data).

    >>> mask_secrets({"env": {"NOTE": "ghp_abcdefghijklmnopqrstuvwxyz0123456789", "DB_PASS": "x", "STAGE": "prod"}})
    {'env': {'NOTE': '***', 'DB_PASS': '***', 'STAGE': 'prod'}}
    >>> mask_secrets({"region": "eu-north-1", "env": {"API_TOKEN": "s3cret", "STAGE": "prod"},
    ...               "care_overrides": {"targets": {"eu-north-1": {"job_variables": {"env": {"DB_PASSWORD": "x"}}}}},
    ...               "urls": ["https://user:pw@db.example.org/x", "https://example.org"]})
    {'region': 'eu-north-1', 'env': {'API_TOKEN': '***', 'STAGE': 'prod'}, 'care_overrides': {'targets': {'eu-north-1': {'job_variables': {'env': {'DB_PASSWORD': '***'}}}}}, 'urls': ['***', 'https://example.org']}
    """
    return _masked("", value)


def mask_text(text: str, known: Iterable[str] = ()) -> str:
    """``text`` (a reason, an error message) fit to print: the ``known`` secret values
    (:func:`secret_values` of the job variables involved) wherever they occur, the credentials of
    any URL, the value after a secret-looking name (``"API_TOKEN": "..."``, ``'DB_PASS': '...'``,
    ``DB_PASS=...``) and the value Prefect quotes when a secret-looking field fails validation, each
    shown as ``***``. A known value shorter than 6 characters is replaced only as a whole word
    (a password ``x`` does not blank every x of the text).

    >>> mask_text("cannot connect to postgresql://care:hunter2@db/x (refused)")
    'cannot connect to postgresql://***@db/x (refused)'
    >>> mask_text("Validation failed for field 'env.DB_PASSWORD'. Failure reason: 86427531 is not valid under any of the given schemas")
    "Validation failed for field 'env.DB_PASSWORD'. Failure reason: *** is not valid under any of the given schemas"
    >>> mask_text("422: got 'tok-s3cret' for field X; also run-9 tok-s3cret", known=["tok-s3cret"])
    "422: got '***' for field X; also run-9 ***"
    >>> mask_text("{'DB_PASS': 'pw 1', 'STAGE': 'prod'} and MY_TOKEN=abc, x=1")
    "{'DB_PASS': '***', 'STAGE': 'prod'} and MY_TOKEN=***, x=1"
    """
    from care_flows.aws.userdata import is_secret_name, mask_url_credentials

    text = text or ""
    forms: set[str] = set()
    for value in known:
        value = str(value)
        if value.strip():
            forms.update({value, json.dumps(value)[1:-1], repr(value)[1:-1]})
    for form in sorted(forms, key=len, reverse=True):  # the longest first: a value inside another is masked with it
        if form and form in text:
            text = (text.replace(form, "***") if len(form) >= 6
                    else re.sub(rf"(?<![\w.-]){re.escape(form)}(?![\w.-])", "***", text))
    text = mask_url_credentials(text)

    def named(m: re.Match[str]) -> str:
        return f"{m['head']}***{m['tail']}" if is_secret_name(m["name"]) and m["value"] not in ("", "***") else m[0]

    text = _QUOTED_ENTRY.sub(named, text)
    text = _ASSIGNED_ENTRY.sub(named, text)
    return _PREFECT_FIELD.sub(lambda m: f"{m['head']}***" if is_secret_name(m["name"]) else m[0], text)


# "NAME": "value" / 'NAME': 'value' / "NAME": 123 (a JSON document or a Python dict in an error message)
_QUOTED_ENTRY = re.compile(
    r"""(?P<head>(?P<q>\\?["'])(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P=q)\s*:\s*(?P<vq>\\?["'])?)(?P<value>(?(vq)[^"'\\]*|[^\s,;)}\]]*))(?P<tail>(?(vq)(?P=vq)))"""
)
# NAME=value, the way env entries are written on a command line (upper-case names only: prose is not masked)
_ASSIGNED_ENTRY = re.compile(r"(?P<head>\b(?P<name>[A-Z_][A-Z0-9_]*)=)(?P<value>[^\s,;)}\]'\"]*)(?P<tail>)")
# Prefect's 422 for a job variable its pool's template rejects quotes the value it rejected
_PREFECT_FIELD = re.compile(r"(?P<head>Validation failed for field '(?:[^']*\.)?(?P<name>[^'.]+)'\. Failure reason: )(?P<value>.+?)(?= is not | does not |$)")


def secret_values(*job_variables: Any) -> list[str]:
    """The secret values in job variables (a run's, its deployment's), to mask wherever a message
    might quote them (:func:`mask_text`): every ``env`` entry under a secret-looking name or with a
    token-looking value, and every string holding a URL with credentials, at any depth (a region
    target's ``job_variables.env`` inside ``care_overrides``), in JSON text too (overrides given as
    a string). Numbers count (a YAML password ``86427531`` is an int).

    >>> nested = json.dumps({"targets": {"eu-north-1": {"job_variables": json.dumps({"env": {"API_TOKEN": "tok-s3cret"}})}}})
    >>> secret_values({"env": {"DB_PASSWORD": 86427531, "STAGE": "prod"}}, {"care_overrides": nested})
    ['86427531', 'tok-s3cret']
    """
    from care_flows.aws.userdata import has_url_credentials, is_secret_name, is_secret_value

    found: list[str] = []

    def walk(name: str, value: Any, env: bool, depth: int) -> None:
        if depth > 12:
            return
        if isinstance(value, str) and value.lstrip().startswith(("{", "[")):
            try:
                parsed = json.loads(value)
            except ValueError:
                parsed = None
            if isinstance(parsed, (Mapping, list)):
                walk(name, parsed, env, depth + 1)
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(str(k), v, str(name) == "env", depth + 1)
        elif isinstance(value, list):
            for v in value:
                walk(name, v, False, depth + 1)
        elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
            text = str(value)
            if text.strip() and ((env and (is_secret_name(name) or is_secret_value(text))) or has_url_credentials(text)):
                if text not in found:
                    found.append(text)

    for variables in job_variables:
        walk("", variables, False, 0)
    return found


def _masked(name: Any, value: Any, *, env: bool = False) -> Any:
    """``value`` with secrets replaced by ``***``: entries of an ``env`` mapping under secret-looking
    names or with token-looking values, and URLs with credentials anywhere (the rule by which the
    worker drops env entries from user data, care_flows.aws.userdata.secret_reason)."""
    from care_flows.aws.userdata import has_url_credentials, is_secret_name, is_secret_value

    if isinstance(value, Mapping):
        return {k: _masked(k, v, env=str(name) == "env") for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(name, v) for v in value]
    text = isinstance(value, str)
    if (env and (is_secret_name(str(name)) or (text and is_secret_value(value)))) or (text and has_url_credentials(value)):
        return "***"
    return value


def gives_duration(overrides: Mapping[str, Any]) -> bool:
    """The overrides give ``expected_duration``: plan with it, not with the learned one, and do
    not record this run's duration in the flow's history (a backfill is not a nightly run)."""
    return "expected_duration" in overrides


def gives_need(overrides: Mapping[str, Any]) -> bool:
    """The overrides give ``vcpu`` or ``memory_gib``: size from the policy's need (both fields,
    as overridden), not from the usage history."""
    return bool({"vcpu", "memory_gib"} & overrides.keys())

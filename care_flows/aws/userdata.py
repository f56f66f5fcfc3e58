"""The user-data script a CaRE instance boots with.

It installs Python and what the run needs (``install``: a pip requirement spec), reads the
Prefect API key (and, for a self-hosted server behind basic auth, ``PREFECT_API_AUTH_STRING``)
**on the instance** from AWS Secrets Manager or an SSM SecureString through the instance
profile (the script holds only the secrets' *names*), runs
``prefect flow-run execute <id>`` and powers the instance off afterwards; the instance was
launched with ``InstanceInitiatedShutdownBehavior=terminate``, so power-off terminates it. A
``shutdown -h +TTL`` scheduled first bounds the instance's life even if the worker dies.

Environment variables whose *name* looks secret (:data:`SECRET_NAME_PATTERN`: ``KEY``,
``SECRET``, ``TOKEN``, ``PASS``, ``PWD``, ``PAT``, ``AUTH``, ``CRED``, ``WEBHOOK``, ``DSN`` ...) or whose
*value* looks like one (:func:`is_secret_value`: URL credentials such as ``scheme://user:password@host``,
a secret query parameter, a webhook URL, a token such as ``ghp_...``, ``xoxb-...``, ``AKIA...``) are
never written (user data is readable by anyone who may describe the instance); the worker logs a
warning naming them. :func:`assert_no_secrets` double-checks the finished script against the
secret *values* the worker knows. (The worker also keeps its own Prefect settings out: see
:mod:`care_flows.aws.worker`.)

>>> script = render_user_data(flow_run_id="0b7c1d2e-0000-4000-8000-000000000001",
...     api_url="http://prefect.internal:4200/api", env={"PREFECT_API_KEY": "pnu_x", "MODE": "a b"},
...     install="care-flows==0.1.0", api_key_secret="care/prefect-api-key", region="eu-north-1", ttl_minutes=90)
>>> "pnu_x" in script, "export MODE='a b'" in script
(False, True)
>>> "prefect flow-run execute 0b7c1d2e-0000-4000-8000-000000000001" in script
True
>>> secret_source("arn:aws:ssm:eu-north-1:123456789012:parameter/care/key")
('ssm', '/care/key')
>>> secret_source("care/prefect-api-key")
('secretsmanager', 'care/prefect-api-key')
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping

from care_flows.errors import ConfigError

__all__ = ["MAX_USER_DATA_BYTES", "SECRET_NAME_PATTERN", "mask_url", "mask_url_credentials", "is_secret_name", "is_secret_value", "looks_like_token", "secret_reason",
           "safe_env", "secret_source", "secret_region", "render_user_data", "assert_no_secrets", "has_url_credentials"]

MAX_USER_DATA_BYTES = 16 * 1024
SECRET_NAME_PATTERN = re.compile(
    r"KEY|SECRET|TOKEN|PASS|PWD|AUTH|CRED|WEBHOOK|DSN|COOKIE|PRIVATE|SIGNING|SALT|CONN_?STR|CONNECTION_?STRING|HEADERS$"
    r"|(?:^|_)PAT(?:_|$)",
    re.IGNORECASE,
)
"""Parts of an environment variable *name* that mark it as holding a secret (anywhere in the name;
``PAT`` only as a word, so ``PATH`` is not one (nor ``PW``: Playwright's ``PW_TEST_*``; a Secret
block's value is caught by where it comes from, :func:`care_flows.aws.worker.block_env_names`); a name ending in ``HEADERS``:
``PREFECT_CLIENT_CUSTOM_HEADERS``, ``OTEL_EXPORTER_OTLP_HEADERS`` carry API keys or basic auth)."""
# a variable that holds a *reference* to a secret (its ARN, or a name/path by a name saying so), not
# the secret: kept, so that the flow can read its secret as the warning for a dropped one advises
_SECRET_REFERENCE_ARN = re.compile(r"^arn:aws[\w-]*:(?:secretsmanager|ssm|kms):[\w-]+:\d{12}:\S+$")
_SECRET_REFERENCE_NAME = re.compile(r"(?:_ARN|_SECRET_NAME|_SECRET_ID|_PARAMETER|_PARAMETER_NAME|_SSM_PATH|_SECRET_PATH)$", re.IGNORECASE)
_SECRET_REFERENCE_VALUE = re.compile(r"^[A-Za-z0-9/_+=.@-]{1,512}$")
# a credential inside a longer value: key=value pairs (JVM options, Spark conf, connection strings)
# and HTTP authorization (Basic/Bearer), e.g. in PREFECT_CLIENT_CUSTOM_HEADERS
_INLINE_CREDENTIAL = re.compile(
    # a key that IS the credential's name (directly followed by = or :, so tokenizer=, max_tokens=,
    # secret.file= or token_cache= are not), then a value of 8+ characters with a letter in it
    r"(?:passw(?:or)?d|pwd|secret|token|api[_-]?key|access[_-]?key|secret[._-]?key)[\"']?\s*[=:]\s*[\"']?"
    r"(?=[^\s\"',;}]*[A-Za-z])[^\s\"',;}]{8,}"
    r"|\b(?:Basic|Bearer)\s+[A-Za-z0-9+/=._~-]{8,}",
    re.IGNORECASE,
)
_OPAQUE_RUN = re.compile(r"[A-Za-z0-9+/=_-]{32,}")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# userinfo with a password (user:pw@, :pw@) or a token-length name (20+ characters, e.g. a GitHub
# token as https://ghp_...@github.com); short names such as ssh://git@ are usernames, not secrets.
# The password runs to the last '@' before a blank or quote: database URLs take '/', '#', '?' and
# '@' in it unencoded (SQLAlchemy does), so stopping at the first of them showed the rest. A
# host:port ("host:8080/path@x", "host:8080?to=ops@example.org") is no user:password.
_URL_CREDENTIALS = re.compile(
    r"://(?:[^/?#@\s:\[\]]*:(?!\d{1,5}(?:[/?#]|$))(?!//)[^\s\"'<>]{0,512}"  # to the last '@' before a blank or quote (bounded:
    r"|[^/?#\s@]*:[^/?#\s@]*"                                               # linear on long values); a password with a quote
    r"|[^/?#\s@:]{20,})@")                                                   # or '<' inside a longer value, as before
# a database or broker URL: its authority's "user:" is never a host:port, so "care:2024/pw@" is a password
_DB_URL_CREDENTIALS = re.compile(
    r"((?:postgres(?:ql)?|mysql|mariadb|mssql|oracle|rediss?|amqps?|mongodb(?:\+srv)?|jdbc:[a-z]+)(?:\+\w+)?://)"
    r"[^/?#@\s:\[\]]*:[^\s\"'<>]{0,512}@", re.IGNORECASE)
# a whole value that is one URL: its user information runs to the last '@' (a blank in a password
# works with httpx and SQLAlchemy)
_WHOLE_URL = re.compile(r"^\s*([A-Za-z][\w+.-]*://)(.*)@([^@\s]*)\s*$", re.DOTALL)
# a query parameter carrying a credential (?token=..., &X-Amz-Signature=..., &sig=...); group 1 is
# everything up to its value. sig, auth and code only as the whole name (Azure SAS ?sig=, OAuth
# ?code=): ?author=, ?design=, ?country_code= are no credentials
_URL_SECRET_QUERY = re.compile(
    r"([?&](?:[\w.-]*(?:token|secret|passw(?:or)?d|pwd|api[_-]?key|apikey|access[_-]?key|signature|credential)[\w.-]*|sig|auth|code)=)"
    r"[^&#\s]{4,}",
    re.IGNORECASE,
)
# webhook URLs are bearer credentials: whoever has the URL can post (Slack, Discord, Teams, Zapier, IFTTT)
_WEBHOOK_URL = re.compile(
    r"https?://(?:hooks\.slack\.com/|(?:[\w-]+\.)?discord(?:app)?\.com/api/webhooks/|[\w.-]*webhook\.office\.com/"
    r"|outlook\.office\.com/webhook|hooks\.zapier\.com/|maker\.ifttt\.com/trigger/|[^/\s]+/[^\s]*webhooks?/[^\s]{16,})",
    re.IGNORECASE,
)
# tokens with a known prefix (GitHub, GitLab, Slack, OpenAI/Stripe-style, AWS access key ids, Prefect, npm, PyPI,
# Hugging Face, Google API keys, JWTs)
_TOKEN_PREFIX = re.compile(
    r"(?:^|[^A-Za-z0-9])(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|glpat-[A-Za-z0-9_-]{16,}|xox[abposr]-[A-Za-z0-9-]{10,}"
    r"|sk[-_](?:live_|test_|proj-)?[A-Za-z0-9_-]{16,}|rk_live_[A-Za-z0-9]{16,}|(?:AKIA|ASIA)[A-Z0-9]{16}|pnu_[A-Za-z0-9]{20,}"
    r"|npm_[A-Za-z0-9]{30,}|pypi-[A-Za-z0-9_-]{30,}|hf_[A-Za-z0-9]{30,}|AIza[A-Za-z0-9_-]{30,}"
    r"|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})"
)
_OPAQUE = re.compile(r"^[A-Za-z0-9+/=_-]{32,}$")


def has_url_credentials(text: str) -> bool:
    """Whether ``text`` holds a URL with credentials in it: user information with a password or a
    token (``user:pw@``, ``:pw@``, ``ghp_...@``), a credential in the query (``?token=``,
    ``X-Amz-Signature=``), or a webhook URL (whoever holds it may post).

    >>> [has_url_credentials(t) for t in ("postgresql://care:pw@db/x", "redis://:pw@cache:6379/0",
    ...     "https://ghp_0123456789abcdefghij@github.com/o/r", "git+ssh://git@github.com/o/r",
    ...     "http://hooks.internal:8080?notify=ops@example.org", "http://host:8080/path")]
    [True, True, True, False, False, False]
    >>> [has_url_credentials(t) for t in ("https://hooks.slack.com/services/T000/B000/XXXXSECRETXXXX",
    ...     "https://api.example.org/v1?page=2&api_key=abcd1234", "https://example.org/docs?page=2")]
    [True, True, False]

    Passwords holding ``/ # ? @`` or a blank (a database URL takes them unencoded), and what is not one:

    >>> [has_url_credentials(t) for t in ("postgresql+asyncpg://care:Pa/ss@db/prefect", "https://u:pa#ss@h/x", "https://u:p?w@h",
    ...     "https://u:p@ss@h", "https://admin:my secret pw@prefect.internal/api")]
    [True, True, True, True, True]
    >>> [has_url_credentials(t) for t in ("git+https://github.com/o/r@v1.0", "https://host:8080/path@x",
    ...     "https://registry.npmjs.org/@scope/pkg", "http://[::1]:4200/api", "https://h:443/a b@c")]
    [False, False, False, False, False]
    """
    if "://" not in text:
        return False
    return bool(("@" in text and (_URL_CREDENTIALS.search(text) or _DB_URL_CREDENTIALS.search(text) or _whole_url_userinfo(text) is not None))
                or _WEBHOOK_URL.search(text) or _URL_SECRET_QUERY.search(text))


def _whole_url_userinfo(text: str) -> str | None:
    """The user information of ``text`` when it is one URL whose user information holds a password
    (``user:password``, anything up to the last ``@``, blanks included), else None."""
    m = _WHOLE_URL.match(text)
    if m is None:
        return None
    info = m.group(2)
    user, colon, rest = info.partition(":")
    if not colon or any(c in user for c in "/?#[") or rest.startswith("//") or re.match(r"\d{1,5}(?:[/?#]|$)", rest):
        return None  # no password, an IPv6 host, a list of URLs, or a host:port whose path holds an '@'
    return info


def mask_url(url: str) -> str:
    """A setting that is one URL (``PREFECT_API_URL``), as it may be shown: any user information as
    ``***`` (everything up to the last ``@``: a password may hold ``@``, ``#``, ``/`` or a blank) and
    credential query values as ``***``.

    >>> mask_url("http://admin:my secret pw@127.0.0.1:4200/api"), mask_url("http://admin:hunter@2x@h/api")
    ('http://***@127.0.0.1:4200/api', 'http://***@h/api')
    >>> mask_url("http://127.0.0.1:4200/api?token=SEKRET123"), mask_url("http://127.0.0.1:4200/api")
    ('http://127.0.0.1:4200/api?token=***', 'http://127.0.0.1:4200/api')
    >>> mask_url("http://ghp_0123456789abcdefghij@h/api"), mask_url("http://[::1]:4200/api/@scope")
    ('http://***@h/api', 'http://[::1]:4200/api/@scope')
    """
    m = _WHOLE_URL.match(url)
    if m is not None and (_whole_url_userinfo(url) is not None or "/" not in m.group(2)):  # not an '@' in a path
        url = f"{m.group(1)}***@{m.group(3)}"
    return mask_url_credentials(url)


def looks_like_token(value: str) -> bool:
    """Whether ``value`` looks like a token: a known token prefix (``ghp_``, ``github_pat_``,
    ``xoxb-``, ``sk-``, ``AKIA``, ``pnu_``, a JWT ...) or 32+ characters of opaque base64/url-safe text
    mixing upper case, lower case and digits (a hex digest, a UUID or a path is not one).

    >>> [looks_like_token(v) for v in ("ghp_abcdefghijklmnopqrstuvwxyz0123456789", "xoxb-1234567890-abcdefghij",
    ...     "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "prod", "eu-north-1",
    ...     "0b7c1d2e-0000-4000-8000-000000000001", "3f786850e387550fdab836ed7e6dc881de23001b", "/opt/care/data")]
    [True, True, True, True, False, False, False, False, False]
    """
    text = value.strip()
    if _TOKEN_PREFIX.search(text):
        return True
    return bool(_OPAQUE.match(text) and not text.startswith("/") and re.search(r"[A-Z]", text) and re.search(r"[a-z]", text)
                and re.search(r"[0-9]", text))


def mask_url_credentials(text: str) -> str:
    """``text`` with the credentials of any URL in it shown as ``***``.

    >>> mask_url_credentials("postgresql://care:hunter2@db/x")
    'postgresql://***@db/x'
    >>> mask_url_credentials("got 'postgresql://care:Pa/ss@db/x', 'https://u:p@ss@h' and https://h/api?x=1&api_key=abcd1234")
    "got 'postgresql://***@db/x', 'https://***@h' and https://h/api?x=1&api_key=***"
    """
    if "://" not in text:
        return text
    if "@" in text:
        text = _DB_URL_CREDENTIALS.sub(lambda m: m.group(1) + "***@", text)
        text = _URL_CREDENTIALS.sub("://***@", text)
    return _URL_SECRET_QUERY.sub(lambda m: m.group(1) + "***", text)


def is_secret_value(value: str) -> bool:
    """Whether ``value`` looks like a secret whatever its name: :func:`has_url_credentials`,
    :func:`looks_like_token`, a token inside it, or a credential written into it (``password=...``,
    ``secret.key=...``, ``Basic ...``/``Bearer ...``).

    >>> is_secret_value("https://hooks.slack.com/services/T000/B000/XXXXSECRETXXXX"), is_secret_value("prod")
    (True, False)
    >>> [is_secret_value(v) for v in ('{"X-API-Key": "9f8e7d6c5b4a39281706f5e4d3c2b1a0ffeeddcc"}',
    ...     '{"Authorization": "Basic YWRtaW46aHVudGVyMg=="}', "-Djavax.net.ssl.trustStorePassword=hunter2hunter2",
    ...     "spark.hadoop.fs.s3a.secret.key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "--max-tokens=1000", "-Xmx4g -Dfile.encoding=UTF-8")]
    [True, True, True, True, False, False]
    """
    # a token inside a longer value, but not a URL's path, an ARN or an image digest (ids, not credentials)
    opaque_inside = "://" not in value and not value.lstrip().startswith("arn:") and "@sha256:" not in value
    return (has_url_credentials(value) or looks_like_token(value) or bool(_INLINE_CREDENTIAL.search(value))
            or (opaque_inside and any(looks_like_token(run) for run in _OPAQUE_RUN.findall(value))))


def is_secret_reference(name: str, value: str) -> bool:
    """Whether ``name=value`` names a secret rather than holding one: an AWS ARN of a Secrets Manager
    secret, SSM parameter or KMS key, or a plain name/path in a variable whose name says it is one
    (``..._ARN``, ``..._SECRET_NAME``, ``..._SECRET_ID``, ``..._PARAMETER``, ``..._SSM_PATH``). These may be
    written: the flow reads its secret with them through the instance profile.

    >>> is_secret_reference("DB_SECRET_ARN", "arn:aws:secretsmanager:eu-north-1:123456789012:secret:prod/db-AbCdEf")
    True
    >>> is_secret_reference("API_KEY_SECRET_NAME", "care/prefect-api-key"), is_secret_reference("DB_PASSWORD", "care/prefect-api-key")
    (True, False)
    >>> is_secret_reference("API_KEY_SECRET_NAME", "ghp_abcdefghijklmnopqrstuvwxyz0123456789")
    False
    """
    text = str(value).strip()
    if _SECRET_REFERENCE_ARN.match(text):
        return True
    return bool(_SECRET_REFERENCE_NAME.search(name) and _SECRET_REFERENCE_VALUE.match(text) and not is_secret_value(text))


def is_secret_name(name: str) -> bool:
    """Whether an environment variable name looks like it holds a secret (:data:`SECRET_NAME_PATTERN`).

    >>> [is_secret_name(n) for n in ("PREFECT_API_KEY", "DB_PASS", "MYSQL_PWD", "GITHUB_PAT", "SLACK_WEBHOOK_URL", "SENTRY_DSN")]
    [True, True, True, True, True, True]
    >>> [is_secret_name(n) for n in ("PREFECT_API_URL", "PATH", "PYTHONPATH", "STAGE", "PATCH_LEVEL")]
    [False, False, False, False, False]
    """
    return bool(SECRET_NAME_PATTERN.search(name))


def secret_reason(name: str, value: object) -> str | None:
    """Why ``name=value`` may not be written to user data (the name, never the value), or ``None``.

    >>> secret_reason("DB_PASS", "x"), secret_reason("NOTE", "ghp_abcdefghijklmnopqrstuvwxyz0123456789"), secret_reason("STAGE", "prod")
    ('its name looks secret', 'its value looks like a token', None)
    """
    if not _ENV_NAME.match(name):
        return "not a valid variable name"
    text = str(value)
    reference = is_secret_reference(name, text)  # an ARN's "secret:prod/db" is a name, not a credential
    if is_secret_name(name) and not reference:
        return "its name looks secret"
    if has_url_credentials(text):
        return "its value is a URL with credentials"
    if looks_like_token(text):
        return "its value looks like a token"
    if not reference and is_secret_value(text):
        return "its value holds a credential"
    return None


def safe_env(env: Mapping[str, str | None]) -> tuple[dict[str, str], list[str]]:
    """Split ``env`` into what may go in user data and the names left out (see :func:`secret_reason`).

    >>> safe_env({"STAGE": "prod", "DB_URL": "postgresql://care:hunter2@db/prefect", "PREFECT_API_KEY": "pnu_x"})
    ({'STAGE': 'prod'}, ['DB_URL', 'PREFECT_API_KEY'])
    """
    kept: dict[str, str] = {}
    dropped: list[str] = []
    for name, value in env.items():
        if value is None:
            continue
        if secret_reason(name, value):
            dropped.append(name)
            continue
        kept[name] = str(value)
    return kept, sorted(dropped)


def secret_source(secret: str) -> tuple[str, str]:
    """``(service, name)`` for a secret reference.

    ``arn:aws:ssm:...:parameter/x`` (or ``arn:aws-cn:ssm:``, ``arn:aws-us-gov:ssm:``), ``ssm:/x`` and ``/x``
    are SSM SecureString parameters; ``arn:aws:secretsmanager:...``, ``secretsmanager:x`` and a plain name
    are Secrets Manager.

    >>> secret_source("arn:aws-us-gov:ssm:us-gov-west-1:123456789012:parameter/care/key")
    ('ssm', '/care/key')
    """
    s = secret.strip()
    if re.match(r"arn:aws[\w-]*:ssm:", s):  # aws-cn and aws-us-gov too (review 55b M7)
        return "ssm", "/" + s.split(":parameter/", 1)[-1].lstrip("/")
    if s.startswith("ssm:"):
        return "ssm", s[4:]
    if s.startswith("/"):
        return "ssm", s
    if s.startswith("secretsmanager:"):
        return "secretsmanager", s[len("secretsmanager:"):]
    return "secretsmanager", s


def secret_region(secret: str) -> str | None:
    """The region an ARN names (a secret is read there, wherever the instance runs), else ``None``.

    >>> secret_region("arn:aws:secretsmanager:eu-north-1:123456789012:secret:care/key-AbCdEf")
    'eu-north-1'
    >>> secret_region("care/key") is None
    True
    """
    parts = secret.strip().split(":")
    return parts[3] if secret.strip().startswith("arn:") and len(parts) > 4 and parts[3] else None


def _read_secret(variable: str, secret: str, region: str, what: str) -> list[str]:
    """Lines that read ``secret`` on the instance into ``variable`` (in the ARN's region, else ``region``).

    >>> _read_secret("PREFECT_API_AUTH_STRING", "/care/auth", "eu-north-1", "the auth string")[1]
    'PREFECT_API_AUTH_STRING="$(aws ssm get-parameter --region eu-north-1 --name /care/auth --with-decryption --query Parameter.Value --output text)" || { echo "cannot read the auth string"; exit 1; }'
    """
    q = shlex.quote
    service, name = secret_source(secret)
    where = secret_region(secret) or region
    if service == "ssm":
        fetch = f"aws ssm get-parameter --region {q(where)} --name {q(name)} --with-decryption --query Parameter.Value --output text"
    else:
        fetch = f"aws secretsmanager get-secret-value --region {q(where)} --secret-id {q(name)} --query SecretString --output text"
    return [
        f"# {what} is read here through the instance profile; it is not in this script",
        f'{variable}="$({fetch})" || {{ echo "cannot read {what}"; exit 1; }}',
        f"export {variable}",
    ]


def render_user_data(
    *,
    flow_run_id: str,
    api_url: str | None,
    env: Mapping[str, str | None],
    install: str,
    api_key_secret: str | None,
    region: str,
    ttl_minutes: int,
    command: str = "prefect flow-run execute",
    api_auth_string_secret: str | None = None,
    instance_type: str | None = None,
) -> str:
    """The bash user-data script for one flow run (see the module docstring).

    ``api_key_secret`` and ``api_auth_string_secret`` (basic auth of a self-hosted server,
    ``user:password``) name secrets read on the instance into ``PREFECT_API_KEY`` and
    ``PREFECT_API_AUTH_STRING``; see :func:`secret_source` and :func:`secret_region`.
    ``CARE_REGION`` (and, given ``instance_type``, ``CARE_INSTANCE_TYPE``) tell the run where it
    really executes: after a capacity fallback that is not the region and type it was planned for,
    and ``@care`` accounts its carbon and cost there.
    """
    kept, _ = safe_env(env)
    _check_command(command)
    for what, text in (("the Prefect API URL", api_url or ""), ("install", install)):
        if has_url_credentials(text):
            raise ConfigError(f"{what} holds credentials in a URL (user:password@ or a token@); user data is readable by anyone "
                              "who may describe the instance: use api_auth_string_secret for the API, a private index or "
                              "deploy key on the image for packages")
    if api_url:
        kept["PREFECT_API_URL"] = api_url
    kept["PREFECT__FLOW_RUN_ID"] = flow_run_id
    kept["CARE_REGION"] = region
    if instance_type:
        kept["CARE_INSTANCE_TYPE"] = instance_type
    q = shlex.quote
    lines = [
        "#!/bin/bash",
        f"# CaRE flow run {flow_run_id}: install, execute, power off (terminates the instance)",
        "set -uo pipefail",
        f"shutdown -h +{int(ttl_minutes)} 'CaRE TTL reached' || true",
        "trap 'shutdown -h now' EXIT",
        "exec > >(tee -a /var/log/care-flow-run.log) 2>&1",
        "dnf install -y -q python3.11 python3.11-pip || yum install -y -q python3 python3-pip",
        "PY=$(command -v python3.11 || command -v python3)",
        "$PY -m venv /opt/care && . /opt/care/bin/activate",
        f"pip install --quiet {' '.join(q(part) for part in install.split())}",
    ]
    for name in sorted(kept):
        lines.append(f"export {name}={q(kept[name])}")
    for variable, secret, what in (("PREFECT_API_KEY", api_key_secret, "the Prefect API key"),
                                   ("PREFECT_API_AUTH_STRING", api_auth_string_secret, "the Prefect API auth string")):
        if secret:
            lines += _read_secret(variable, secret, region, what)
    run = command.strip()
    lines.append(f"{run} {q(flow_run_id)}" if run.endswith("flow-run execute") else run)
    script = "\n".join(lines) + "\n"
    if len(script.encode()) > MAX_USER_DATA_BYTES:
        raise ConfigError(f"user data is {len(script.encode())} bytes, over EC2's 16 KiB; shorten env or install")
    return script


def _check_command(command: str) -> None:
    """A one-line :class:`ConfigError` when the ``command`` job variable holds a secret: it is written
    to user data as it is (review 55b M1: ``env PREFECT_API_KEY=pnu_... prefect flow-run execute``).

    >>> _check_command("prefect flow-run execute"), _check_command("env STAGE=prod prefect flow-run execute")
    (None, None)
    >>> _check_command("env GITHUB_TOKEN=ghp_0123456789abcdefghijklmnopqrstuvwxyzAB prefect flow-run execute")
    Traceback (most recent call last):
    ...
    care_flows.errors.ConfigError: job variable command holds a secret (word 2, GITHUB_TOKEN=...: its name looks secret); user data is readable by anyone who may describe the instance: set it in env (a secret-looking name is left out) or read it in the flow from Secrets Manager or SSM
    """
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    for i, word in enumerate(words, 1):
        name, eq, value = word.partition("=")
        why = secret_reason(name, value) if eq and _ENV_NAME.match(name) else None
        if why is None and (has_url_credentials(word) or looks_like_token(word) or is_secret_value(word)):
            why = "it holds a credential"
        if why is not None:
            shown = f"{name}=..." if eq and _ENV_NAME.match(name) else "a value"
            raise ConfigError(f"job variable command holds a secret (word {i}, {shown}: {why}); user data is readable by anyone who "
                              "may describe the instance: set it in env (a secret-looking name is left out) or read it in the flow "
                              "from Secrets Manager or SSM")


def assert_no_secrets(script: str, secrets: Iterable[str | None], template: str = "") -> None:
    """Raise :class:`ConfigError` if any known secret value appears in ``script``.

    ``template``: the same script rendered without the run's env, API URL and install spec; a
    value is flagged only where it occurs more often in ``script`` than there, so the fixed text a
    harmless value also spells (``AUTH_PROVIDER=prefect``: the word ``prefect``) is no reason to
    refuse a launch. The message never contains the secret itself.

    >>> fixed = "pip install prefect; prefect flow-run execute 1"
    >>> assert_no_secrets(fixed, ["prefect"], template=fixed)
    >>> assert_no_secrets("export X=hunter22", ["hunter22"])
    Traceback (most recent call last):
    ...
    care_flows.errors.ConfigError: user data would contain a secret value; pass secrets by name (api_key_secret), not in env
    """
    for value in secrets:
        if value and len(value) >= 4 and script.count(value) > template.count(value):
            raise ConfigError("user data would contain a secret value; pass secrets by name (api_key_secret), not in env")

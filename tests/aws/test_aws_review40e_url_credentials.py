"""Review 40e, on c3dd498 (review 40b's URL-credential fix).

H1: a password holding a quote or '<'/'>' inside a longer value (JAVA_OPTS, arguments) was no longer a
credential: written to EC2 user data, unmasked. L1: an IPv6 host or a comma-separated list of URLs with an
'@' later became a "credential". L2: a database password of digits then '/', '?' or '#' read as a port.
L8: ?author=, ?design=, ?country_code= counted as credential parameters.
"""

from __future__ import annotations

import pytest

from care_flows.aws.userdata import has_url_credentials, mask_url, mask_url_credentials, safe_env

SECRET = {
    "JAVA_OPTS": "-Ddb.url=postgresql://care:Pa'ss<1>@db.internal/app -Xmx2g",
    "APP_ARGS": "--db postgresql://care:x>y'z@db/app --verbose",
    "DB_A": "postgresql://care:2024/pw@db/x",
    "DB_B": "postgresql://care:12#ab@db/x",
    "DB_C": "mysql+pymysql://care:8080?x@db/x",
    "SAS": "https://acct.blob.core.windows.net/c?sv=2022&sig=abcd1234efgh",
}
ORDINARY = {
    "V6_SCOPE": "http://[::1]:4200/api/@scope",
    "V6_FILE": "http://[2001:db8::1]/files/a@b.txt",
    "V6_QUERY": "http://[::1]:4200/api?to=ops@example.org",
    "MIRRORS": "https://a.example.com,https://b.example.com/@scope",
    "BOOKS": "https://api.example.org/books?author=tolkien",
    "DESIGN": "https://x.example.org/?design=abcd",
    "COUNTRY": "https://x.example.org/?country_code=abcd",
    "DB_NO_PW": "postgresql://db.internal:5432/app",
}


@pytest.mark.parametrize("name", sorted(SECRET))
def test_these_are_credentials_kept_out_of_user_data_and_masked(name: str) -> None:
    value = SECRET[name]
    assert has_url_credentials(value)
    assert safe_env({name: value}) == ({}, [name])
    masked = mask_url_credentials(value)
    for part in ("Pa'ss", "x>y", "2024/pw", "12#ab", "8080?x", "abcd1234efgh"):
        assert part not in masked, masked


@pytest.mark.parametrize("name", sorted(ORDINARY))
def test_these_are_ordinary_urls(name: str) -> None:
    value = ORDINARY[name]
    assert not has_url_credentials(value) and safe_env({name: value}) == ({name: value}, [])
    assert mask_url_credentials(value) == value and mask_url(value) == value

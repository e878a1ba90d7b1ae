"""Credential redaction (pipeline.secrets): URLs, query strings and fsspec options."""

from __future__ import annotations

from pipeline.secrets import MASK, redact_options, redact_text, redact_url


def test_userinfo_is_masked_in_urls_and_in_running_text():
    assert redact_url("https://alice:S3NT1NEL@data.example.org/sst/2020.nc") == "https://***@data.example.org/sst/2020.nc"
    assert redact_url("s3://bucket/raw.zarr") == "s3://bucket/raw.zarr"
    assert redact_url("/data/raw.zarr") == "/data/raw.zarr"
    said = redact_text("cannot read 'http://bob:pw%40x@h:8080/a.nc': 401; see http://h/b.nc")
    assert "pw" not in said and "bob" not in said and "http://***@h:8080/a.nc" in said and "http://h/b.nc" in said


def test_credential_query_values_are_masked_and_others_kept():
    url = "https://h/a.nc?X-Amz-Signature=abc123&X-Amz-Credential=AKIA&version=2&token=zzz"
    shown = redact_url(url)
    assert "abc123" not in shown and "AKIA" not in shown and "zzz" not in shown
    assert "version=2" in shown and shown.count(MASK) == 3


def test_options_mask_every_credential_at_any_depth():
    opts = {"key": "AKIASENTINEL", "secret": "SENTINELSECRET", "anon": False,
            "client_kwargs": {"endpoint_url": "http://127.0.0.1:5000", "aws_session_token": "T"},
            "headers": {"Authorization": "Bearer X"}, "token": None}
    shown = redact_options(opts)
    assert shown == {"key": MASK, "secret": MASK, "anon": False,
                     "client_kwargs": {"endpoint_url": "http://127.0.0.1:5000", "aws_session_token": MASK},
                     "headers": {"Authorization": MASK}, "token": None}
    assert opts["key"] == "AKIASENTINEL"  # the original is untouched


def test_names_that_only_look_like_credentials_are_kept():
    attrs = {"keywords": "sea surface temperature", "sha256": "ab", "land_mask_sha256": "cd", "author": "x",
             "source_archive": "https://u:p@h/a/", "passes": 3}
    assert redact_options(attrs) == {**attrs, "source_archive": "https://***@h/a/"}

"""API keys: Bearer keys checked against their SHA-256 in the key file; 401 without a valid one, 403 for a client
key on an admin route; a key never reaches the logs, the responses or the key file; no keys only when said."""
from __future__ import annotations

import hashlib
import logging

import httpx
import pytest
from conftest import serve

import tamer
from tamer.errors import UsageError
from tamer.serving import KeyRing, make_api_key


def test_the_key_file_holds_hashes_only_and_identifies_each_key(tmp_path):
    path = tmp_path / "keys"
    key = make_api_key(path, "alice")
    admin = make_api_key(path, "ops", "admin")
    text = path.read_text()
    assert key not in text and admin not in text
    assert f"sha256:{hashlib.sha256(key.encode()).hexdigest()} alice client" in text
    assert (path.stat().st_mode & 0o077) == 0
    ring = KeyRing.load(path)
    assert ring.identify(f"Bearer {key}").name == "alice" and ring.identify(f"bearer {admin}").role == "admin"
    for bad in (None, "", key, f"Basic {key}", f"Bearer {key}x", "Bearer ", f"Bearer {key[:-1]}"):
        assert ring.identify(bad) is None


@pytest.mark.parametrize("text", ["", "# only a comment\n", "sha256:abc alice client\n",
                                  "sha256:" + "a" * 64 + " alice root\n", "tamer_plainkey alice client\n"])
def test_a_malformed_key_file_is_refused_in_one_sentence(tmp_path, text):
    (tmp_path / "keys").write_text(text)
    with pytest.raises(UsageError, match="--api-key-file"):
        KeyRing.load(tmp_path / "keys")


def test_serving_needs_keys_or_an_explicit_no_auth(digits_artifact, key_file):
    with pytest.raises(UsageError, match="--no-auth"):
        tamer.api.serve_app(digits_artifact.path)  # neither
    with pytest.raises(UsageError, match="--no-auth"):
        tamer.api.serve_app(digits_artifact.path, api_key_file=str(key_file[0]), auth=False)  # both


def test_routes_need_a_valid_key_and_admin_routes_an_admin_key(digits_artifact, digit_images, key_file, caplog):
    path, client_key, admin_key = key_file
    inputs = {"inputs": digit_images[:1].tolist()}
    caplog.set_level(logging.DEBUG)
    with serve(digits_artifact, auth=True, api_key_file=str(path)) as s:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {client_key}"}):
            r = httpx.post(s.url + "/v1/predict", json=inputs, headers=headers)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
            assert httpx.get(s.url + "/v1/model", headers=headers).status_code == 401
        ok = {"Authorization": f"Bearer {client_key}"}
        assert httpx.post(s.url + "/v1/predict", json=inputs, headers=ok).status_code == 200
        assert httpx.post(s.url + "/admin/reload", headers=ok).status_code == 403
        r = httpx.post(s.url + "/admin/reload", headers={"Authorization": f"Bearer {admin_key}"})
        assert r.status_code == 200 and r.json()["changed"] is False
        assert httpx.get(s.url + "/healthz").status_code == 200 and httpx.get(s.url + "/readyz").status_code == 200
        page = httpx.get(s.url + "/").text + httpx.get(s.url + "/openapi.json").text + httpx.get(s.url + "/metrics").text
    logs = caplog.text
    for key in (client_key, admin_key):
        assert key not in logs and key not in page


def test_without_keys_the_admin_route_is_closed(digits_artifact):
    with serve(digits_artifact) as s:
        r = httpx.post(s.url + "/admin/reload", json={"artifact": str(digits_artifact.path)})
    assert r.status_code == 403 and "admin key" in r.json()["error"]["message"]

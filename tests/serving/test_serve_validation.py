"""Bad requests are answered 4xx with a message naming what was wrong, never 500, and the server goes on."""
from __future__ import annotations

import json

import httpx
import pytest
from conftest import serve

GOOD_IMAGE = [[0.0] * 8 for _ in range(8)]

# (name, body bytes or JSON, content type, expected status, words the message holds)
DIGITS_CASES = [
    ("not JSON", b"{inputs: ", "application/json", 400, "not valid JSON"),
    ("JSON list, not an object", [GOOD_IMAGE], "application/json", 400, "object"),
    ("no inputs field", {"input": [GOOD_IMAGE]}, "application/json", 400, "'inputs'"),
    ("unknown field", {"inputs": [GOOD_IMAGE], "extra": 1}, "application/json", 422, "'extra'"),
    ("inputs not a list", {"inputs": "abc"}, "application/json", 422, "list"),
    ("no inputs", {"inputs": []}, "application/json", 422, "empty"),
    ("text to an image model", {"inputs": ["a text"]}, "application/json", 422, "string"),
    ("wrong shape", {"inputs": [[[1.0] * 7] * 8]}, "application/json", 422, "8x8"),
    ("ragged", {"inputs": [[[1.0] * 8] * 7 + [[1.0] * 3]]}, "application/json", 422, "ragged"),
    ("string in the array", {"inputs": [[["x"] * 8] * 8]}, "application/json", 422, "numbers"),
    ("boolean in the array", {"inputs": [[[True] * 8] * 8]}, "application/json", 422, "numbers"),
    ("NaN", b'{"inputs": [[NaN, 1]]}', "application/json", 422, "NaN"),
    ("Infinity", b'{"inputs": [[Infinity]]}', "application/json", 422, "Infinity"),
    ("overflow to inf", b'{"inputs": [[1e999]]}', "application/json", 422, "finite"),
    ("huge integer", b'{"inputs": [[' + b"9" * 400 + b"]]}", "application/json", 422, "finite"),
    ("too many inputs", {"inputs": [GOOD_IMAGE] * 5}, "application/json", 413, "limit of 4"),
    ("body too large", {"inputs": [[[0.5] * 8] * 8] * 3, "pad": "x" * 5000}, "application/json", 413, "bytes"),
    ("wrong content type", {"inputs": [GOOD_IMAGE]}, "text/plain", 415, "application/json"),
    ("no content type", {"inputs": [GOOD_IMAGE]}, None, 415, "application/json"),
    ("form post", b"inputs=1", "application/x-www-form-urlencoded", 415, "application/json"),
]


def _post(url: str, body, content_type):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"content-type": content_type} if content_type else {}
    return httpx.post(url + "/v1/predict", content=data, headers=headers)


@pytest.fixture(scope="module")
def digits_server(digits_artifact):
    with serve(digits_artifact, max_inputs=4, max_body_bytes=4096) as s:
        yield s


@pytest.mark.parametrize("name,body,content_type,status,words", DIGITS_CASES, ids=[c[0] for c in DIGITS_CASES])
def test_a_bad_predict_request_gets_its_4xx_and_the_server_goes_on(digits_server, name, body, content_type, status,
                                                                  words):
    r = _post(digits_server.url, body, content_type)
    assert r.status_code == status, r.text
    assert words in r.json()["error"]["message"]
    ok = httpx.post(digits_server.url + "/v1/predict", json={"inputs": [GOOD_IMAGE]})
    assert ok.status_code == 200 and ok.json()["predictions"][0]["label"]


def test_a_body_larger_than_it_says_is_cut_off_as_it_streams(digits_server):
    def chunks():
        for _ in range(10):
            yield b" " * 1000
        yield b'{"inputs": []}'

    r = httpx.post(digits_server.url + "/v1/predict", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_unknown_routes_and_methods_answer_in_the_same_shape(digits_server):
    assert httpx.get(digits_server.url + "/v2/nothing").json()["error"]["code"] == 404
    assert httpx.get(digits_server.url + "/v1/predict").status_code == 405


def test_the_error_counts_reach_the_metrics(digits_server):
    _post(digits_server.url, b"nope", "application/json")
    text = httpx.get(digits_server.url + "/metrics").text
    assert 'tamer_errors_total{code="400",route="/v1/predict"}' in text


TEXT_CASES = [
    ("number to a text model", {"inputs": [3]}, 422, "string"),
    ("array to a text model", {"inputs": [[1, 2]]}, 422, "string"),
    ("blank text", {"inputs": ["   "]}, 422, "empty"),
    ("text too long", {"inputs": ["a" * 101]}, 422, "limit of 100"),
    ("null", {"inputs": [None]}, 422, "null"),
]


@pytest.mark.parametrize("name,body,status,words", TEXT_CASES, ids=[c[0] for c in TEXT_CASES])
def test_bad_text_inputs(text_artifact, name, body, status, words):
    with serve(text_artifact, max_text_chars=100) as s:
        r = httpx.post(s.url + "/v1/predict", json=body)
        assert r.status_code == status and words in r.json()["error"]["message"]
        assert httpx.post(s.url + "/v1/predict", json={"inputs": ["fine food"]}).status_code == 200


def test_completions_on_a_classifier_is_a_404_naming_predict(digits_server):
    r = httpx.post(digits_server.url + "/v1/completions", json={"prompt": "hi"})
    assert r.status_code == 404 and "/v1/predict" in r.json()["error"]["message"]


def test_a_failing_model_is_one_500_in_the_api_shape_and_the_server_goes_on(digits_artifact, digit_images,
                                                                            monkeypatch):
    """Not bad input: the model itself raises. The answer is a 500 with a message naming the error kind (not its
    text, which may hold data), the metrics count it, and the next request is answered by the working model."""
    import tamer.serving.app as app_module

    body = {"inputs": [digit_images[0].tolist()]}
    with serve(digits_artifact) as s:
        with monkeypatch.context() as m:
            m.setattr(app_module, "run_inputs", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("secret 42")))
            r = httpx.post(s.url + "/v1/predict", json=body)
        assert r.status_code == 500
        error = r.json()["error"]
        assert "RuntimeError" in error["message"] and "secret" not in error["message"] and error["code"] == 500
        assert 'tamer_errors_total{code="500",route="/v1/predict"}' in httpx.get(s.url + "/metrics").text
        assert httpx.post(s.url + "/v1/predict", json=body).status_code == 200

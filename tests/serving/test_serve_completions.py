"""/v1/completions driven by the official `openai` client against a live server: greedy decoding equals `tamer
predict`, streaming (server-sent events) returns the same text as one answer, seed, stop, top_p and max_tokens
behave as OpenAI documents them, and bad parameters come back as the client's 4xx errors."""
from __future__ import annotations

import pytest
from conftest import serve

import tamer

openai = pytest.importorskip("openai")
PROMPT = "the cat sat on"


@pytest.fixture(scope="module")
def lm_server(lm_artifact, key_file):
    with serve(lm_artifact, auth=True, api_key_file=str(key_file[0]), max_tokens=64) as s:
        yield s


@pytest.fixture(scope="module")
def client(lm_server, key_file):
    return openai.OpenAI(base_url=lm_server.url + "/v1", api_key=key_file[1], max_retries=0)


def test_greedy_completion_equals_tamer_predict(client, lm_artifact):
    out = client.completions.create(model="tamer", prompt=PROMPT, max_tokens=12, temperature=0)
    local = tamer.predict(lm_artifact, [PROMPT], max_new_tokens=12)[0]
    assert out.choices[0].text == local["generated_text"][len(local["prompt"]):]
    assert out.model == lm_artifact.id and out.object == "text_completion"
    assert out.usage.prompt_tokens >= 3 and out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens
    if out.choices[0].finish_reason == "length":
        assert out.usage.completion_tokens == 12


def test_a_streamed_completion_is_the_same_text_in_pieces(client):
    whole = client.completions.create(model="tamer", prompt=PROMPT, max_tokens=20, temperature=0.9, seed=7)
    chunks = list(client.completions.create(model="tamer", prompt=PROMPT, max_tokens=20, temperature=0.9, seed=7,
                                            stream=True))
    assert "".join(c.choices[0].text for c in chunks) == whole.choices[0].text
    assert len(chunks) > 2 and chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])


def test_the_same_seed_gives_the_same_text(client):
    a, b = (client.completions.create(model="tamer", prompt=PROMPT, max_tokens=16, temperature=1.5, seed=3)
            for _ in range(2))
    assert a.choices[0].text == b.choices[0].text


def test_a_tiny_top_p_keeps_only_the_most_likely_token(client):
    greedy = client.completions.create(model="tamer", prompt=PROMPT, max_tokens=10, temperature=0)
    nucleus = client.completions.create(model="tamer", prompt=PROMPT, max_tokens=10, temperature=1.0, top_p=1e-6)
    assert nucleus.choices[0].text == greedy.choices[0].text


def test_a_stop_string_ends_the_text_before_it(client):
    greedy = client.completions.create(model="tamer", prompt=PROMPT, max_tokens=30, temperature=0).choices[0].text
    words = greedy.split()
    assert len(words) >= 3, greedy
    stop = " " + words[2]
    cut = greedy.index(stop)
    for stream in (False, True):
        if stream:
            chunks = list(client.completions.create(model="tamer", prompt=PROMPT, max_tokens=30, temperature=0,
                                                    stop=[stop], stream=True))
            text, finish = "".join(c.choices[0].text for c in chunks), chunks[-1].choices[0].finish_reason
        else:
            out = client.completions.create(model="tamer", prompt=PROMPT, max_tokens=30, temperature=0, stop=stop)
            text, finish = out.choices[0].text, out.choices[0].finish_reason
        assert text == greedy[:cut] and finish == "stop"


@pytest.mark.parametrize("params", [{"temperature": 5}, {"top_p": 2}, {"max_tokens": 0}, {"max_tokens": 65},
                                    {"n": 2}, {"stop": [""]}, {"prompt": ""}, {"seed": -1}])
def test_bad_parameters_are_the_clients_4xx(client, params):
    with pytest.raises(openai.APIStatusError) as caught:
        client.completions.create(**{"model": "tamer", "prompt": PROMPT, **params})
    assert caught.value.status_code == 422


def test_a_wrong_key_is_the_clients_authentication_error(lm_server):
    bad = openai.OpenAI(base_url=lm_server.url + "/v1", api_key="tamer_wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.completions.create(model="tamer", prompt=PROMPT, max_tokens=2)


def test_predict_on_a_language_model_continues_each_prompt(lm_server, lm_artifact, key_file):
    import httpx

    body = httpx.post(lm_server.url + "/v1/predict", json={"inputs": [PROMPT, "the dog"]},
                      headers={"Authorization": f"Bearer {key_file[1]}"}).json()
    assert [p["generated_text"] for p in body["predictions"]] == [
        r["generated_text"] for r in tamer.predict(lm_artifact, [PROMPT, "the dog"])]

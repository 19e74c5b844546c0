"""The submission route at the door (the app in-process on SQLite): bad upload names and
huge problem lists answer 4xx with a bounded body, the same brief twice is 200 with the
first id, and the answer carries the cost estimate."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from PIL import Image

from tests.example_brief import example_text

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = example_text()


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 16), (10, 20, 30)).save(out, format="PNG")
    return out.getvalue()


@pytest.mark.parametrize("name", ["..", ".", "a/b.png", "../hero.png", "\\\\evil.png",
                                  ".hidden.png"])
def test_bad_upload_names_are_422_not_500(client: TestClient, name: str) -> None:
    brief = yaml.safe_load(EXAMPLE)
    brief["scenes"][0]["first_frame"] = "hero.png"
    answer = client.post("/api/briefs", data={"brief": yaml.safe_dump(brief)},
                         files={"first_frames": (name, _png(), "image/png")})
    assert answer.status_code == 422, answer.text
    if "\\" not in name:  # the multipart parser keeps only what follows a backslash
        assert "file name" in answer.json()["detail"]


@pytest.mark.parametrize("name", ["a." + "x" * 250 + ".png", "é" * 200 + ".png"])
def test_upload_names_too_long_for_a_file_system_are_422(client: TestClient, name: str) -> None:
    """255 bytes is the limit, not 255 characters: 200 'é' are 400 bytes."""
    brief = yaml.safe_load(EXAMPLE)
    brief["scenes"][0]["first_frame"] = name
    answer = client.post("/api/briefs", data={"brief": yaml.safe_dump(brief)},
                         files={"first_frames": (name, _png(), "image/png")})
    assert answer.status_code == 422, answer.text
    assert "at most 255 bytes" in answer.json()["problems"][0]["message"]


@pytest.mark.parametrize(("value", "held"), [("yes", True), ("on", True), ("No", False),
                                             ("0", False)])
def test_the_forms_review_hold_reads_yes_and_no(client: TestClient, value: str,
                                                held: bool) -> None:
    answer = client.post("/api/briefs", data={"requires_approval": value},
                         files={"brief": ("brief.yaml", EXAMPLE.encode(), "application/yaml")})
    assert answer.status_code == 201, answer.text
    brief = client.get(f"/api/briefs/{answer.json()['id']}").json()
    assert brief["requires_approval"] is held


def test_a_review_hold_that_is_neither_yes_nor_no_is_422(client: TestClient) -> None:
    """Read as no, a typo would publish what the team meant to review first."""
    answer = client.post("/api/briefs", data={"requires_approval": "maybe"},
                         files={"brief": ("brief.yaml", EXAMPLE.encode(), "application/yaml")})
    assert answer.status_code == 422, answer.text
    assert answer.json()["problems"][0]["path"] == "requires_approval"
    assert client.get("/api/briefs").json() == []


def test_a_text_file_named_png_is_422_at_the_door(client: TestClient) -> None:
    brief = yaml.safe_load(EXAMPLE)
    brief["scenes"][0]["first_frame"] = "hero.png"
    answer = client.post("/api/briefs", data={"brief": yaml.safe_dump(brief)},
                         files={"first_frames": ("hero.png", b"hello", "image/png")})
    assert answer.status_code == 422
    [problem] = answer.json()["problems"]
    assert problem["path"] == "scenes[0].first_frame" and "not an image" in problem["message"]
    assert "/tmp" not in answer.text  # no server path in what the team reads


def test_problems_are_capped_at_100_with_the_total(client: TestClient) -> None:
    brief = yaml.safe_load(EXAMPLE)
    scene = brief["scenes"][0]
    # 40 scenes, each with three bad fields: 120 problems
    brief["scenes"] = [{**scene, "scene_id": f"s{i}", "duration_s": -1, "visual": "",
                        "focus": [5, 5]} for i in range(40)]
    answer = client.post("/api/briefs", json=brief)
    assert answer.status_code == 422
    body = answer.json()
    assert len(body["problems"]) == 100 and body["total"] >= 120
    assert f"{body['total']} problem(s)" in body["detail"]


def test_the_same_brief_twice_is_200_with_the_first_id_and_the_cost(client: TestClient) -> None:
    first = client.post("/api/briefs", content=EXAMPLE,
                        headers={"Content-Type": "application/yaml"})
    assert first.status_code == 201, first.text
    cost = first.json()["cost"]
    assert (cost["renders"], cost["steps"]) == (4, 32) and cost["gpu_seconds"] > 0
    again = client.post("/api/briefs", content=EXAMPLE,
                        headers={"Content-Type": "application/yaml"})
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    keyed = client.post("/api/briefs", json={**yaml.safe_load(EXAMPLE), "seed": 7},
                        headers={"Idempotency-Key": "order-42"})
    retried = client.post("/api/briefs", json={**yaml.safe_load(EXAMPLE), "seed": 7},
                          headers={"Idempotency-Key": "order-42"})
    assert keyed.status_code == 201 and retried.status_code == 200
    assert retried.json()["id"] == keyed.json()["id"]
    # the key sent with another brief: refused, not answered with the first brief's id
    other = client.post("/api/briefs", json={**yaml.safe_load(EXAMPLE), "seed": 8},
                        headers={"Idempotency-Key": "order-42"})
    assert other.status_code == 422 and keyed.json()["id"] in other.json()["detail"]
    assert other.json()["problems"][0]["path"] == "Idempotency-Key"
    assert len(client.get("/api/briefs").json()) == 2


@pytest.mark.parametrize("body", ["[" * 5000 + "]" * 5000, "a: " + "[" * 5000,
                                  "\x00\xff\xfe", "- 1\n- 2\n", "{}"])
def test_garbage_bodies_are_4xx(client: TestClient, body: str) -> None:
    for content_type in ("application/json", "application/yaml"):
        answer = client.post("/api/briefs", content=body.encode("utf-8", "surrogateescape"),
                             headers={"Content-Type": content_type})
        assert 400 <= answer.status_code < 500, (body[:20], answer.status_code, answer.text)


def test_two_uploads_of_the_same_name_are_422_naming_it(client: TestClient) -> None:
    """The last one silently replaced the first."""
    brief = yaml.safe_load(EXAMPLE)
    brief["scenes"][0]["first_frame"] = "good.png"
    answer = client.post("/api/briefs", data={"brief": yaml.safe_dump(brief)},
                         files=[("first_frames", ("good.png", _png(), "image/png")),
                                ("first_frames", ("good.png", _png(), "image/png"))])
    assert answer.status_code == 422, answer.text
    [problem] = answer.json()["problems"]
    assert problem["path"] == "first_frames" and "'good.png'" in problem["message"]
    assert client.get("/api/briefs").json() == []


def test_a_brief_naming_an_upload_by_a_path_is_told_its_plain_name(client: TestClient) -> None:
    """Uploads are plain file names; the brief's `frames/good.png` was refused as 'no file
    good.png was given' while good.png was."""
    brief = yaml.safe_load(EXAMPLE)
    brief["scenes"][0]["first_frame"] = "frames/good.png"
    answer = client.post("/api/briefs", data={"brief": yaml.safe_dump(brief)},
                         files={"first_frames": ("good.png", _png(), "image/png")})
    assert answer.status_code == 422, answer.text
    [problem] = answer.json()["problems"]
    assert problem["path"] == "scenes[0].first_frame"
    assert problem["message"] == ("no file 'frames/good.png' was given with the brief, but "
                                  "'good.png' was: name it 'good.png' in the brief")

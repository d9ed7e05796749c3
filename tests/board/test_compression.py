"""The board's page and its poll fragment go over the wire gzip-compressed when the browser
accepts it, and as they are when it does not."""

import gzip

import pytest

from .test_views import board_url


@pytest.mark.parametrize("fragment", [False, True])
def test_board_is_gzipped_for_browsers_that_accept_it(
    clock, client, hx, login, viewer, project, pipe, put, fragment
):
    put(pipe, 1, names=[f"flag_{n}" for n in range(20)])
    browser = login(hx if fragment else client, viewer)
    plain = browser.get(board_url(project, pipe))
    packed = browser.get(board_url(project, pipe), headers={"Accept-Encoding": "gzip, br"})
    assert plain.status_code == packed.status_code == 200
    assert "Content-Encoding" not in plain.headers
    assert packed.headers["Content-Encoding"] == "gzip"
    for response in (plain, packed):
        assert "Accept-Encoding" in response.headers["Vary"]
    html = gzip.decompress(packed.get_data()).decode()
    assert "flag_0" in html and ("<html" in html) is not fragment
    assert len(packed.get_data()) < len(plain.get_data()) / 3
    assert int(packed.headers["Content-Length"]) == len(packed.get_data())


def test_a_browser_refusing_gzip_gets_it_plain(clock, client, login, viewer, project, pipe, put):
    put(pipe, 1, names=["checkout"])
    page = login(client, viewer).get(board_url(project, pipe),
                                     headers={"Accept-Encoding": "gzip;q=0, identity"})
    assert "Content-Encoding" not in page.headers and "checkout" in page.text


def test_sdk_json_is_not_compressed(client, make, project):
    development = make.environments(project)[0]
    for n in range(30):
        make.feature(project, f"flag_{n}")
    response = client.get("/api/v1/flags/", headers={"X-Environment-Key": development.client_key,
                                                     "Accept-Encoding": "gzip"})
    assert response.status_code == 200 and "Content-Encoding" not in response.headers

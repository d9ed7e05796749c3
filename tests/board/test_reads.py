"""The board's flag cards say whether the flag is read where it last changed (analytics)."""

from webapp.services.platform import analytics


def _post(client, env, counts):
    response = client.post("/api/v1/analytics/flags/", json=counts,
                           headers={"X-Environment-Key": env.client_key})
    assert response.status_code == 200


def _card(html, run_id):
    start = html.index(f'id="run-{run_id}"')
    return html[start:html.index("</li>", start)]


def test_cards_show_reads_where_the_flag_last_changed(clock, client, login, viewer, project,
                                                      pipe, put, envs):
    (in_qa,) = put(pipe, 1, names=["checkout"])  # Dev applied; waiting a day for QA
    (rolling,) = put(pipe, 2, "rolling_out", names=["search"], rollout_percent=10)
    (first,) = put(pipe, 0, names=["fresh"])  # nothing applied yet
    _post(client, envs["Development"], {"checkout": 1500, "search": 3})
    _post(client, envs["Production"], {"search": 42})
    analytics.flush()
    login(client, viewer)
    html = client.get(f"/projects/{project.id}/pipelines/{pipe.id}/board").get_data(as_text=True)
    assert "Read 1,500× since yesterday in Development" in _card(html, in_qa)
    assert "Read 42× since yesterday in Production" in _card(html, rolling)
    assert "card-reads" not in _card(html, first)
    # A flag nobody reads says so.
    (quiet,) = put(pipe, 1, names=["quiet"])
    html = client.get(f"/projects/{project.id}/pipelines/{pipe.id}/board").get_data(as_text=True)
    assert "No reads reported since yesterday in Development" in _card(html, quiet)

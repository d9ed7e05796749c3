"""An admin narrows the audit log to one pipeline and exports what they see."""

import csv
import io
import re

import pytest
from playwright.sync_api import expect

from webapp.services.actors import Actor


@pytest.mark.e2e
def test_admin_filters_by_pipeline_and_exports(page, live_server, sign_in, admin, project, make,
                                               log):
    rollout = log.pipeline(project, "Rollout")
    log.pipeline(project, "Other pipeline")
    flag = make.feature(project, "dark_mode")
    prod = make.environments(project)[2]
    log.entry(project, "FEATURE_STATE_UPDATED_BY_RELEASE_PIPELINE", "dark_mode on in Production",
              actor=Actor.for_pipeline("Rollout"), pipeline_id=rollout.id, feature_id=flag.id,
              object_id=flag.id, object_label="dark_mode", environment_id=prod.id,
              before={"enabled": False}, after={"enabled": True})
    log.entry(project, "FEATURE_STATE_UPDATED", "manual change outside the pipeline",
              feature_id=flag.id, object_id=flag.id, object_label="dark_mode",
              environment_id=prod.id, before={"enabled": True}, after={"enabled": False})
    manual = "dark_mode disabled for everyone in Production"
    by_pipeline = "dark_mode enabled for everyone in Production by pipeline Rollout"

    sign_in(admin.email)
    page.goto(f"{live_server}/projects/{project.id}/audit")
    expect(page.get_by_role("heading", name="Audit log")).to_be_visible()
    expect(page.get_by_text(manual)).to_be_visible()
    expect(page.get_by_role("cell", name="Flag changed by a pipeline")).to_be_visible()
    page.screenshot(path="/tmp/audit-journey-full.png", full_page=True)

    page.get_by_label("Pipeline").select_option(label="Rollout")
    expect(page).to_have_url(re.compile(rf"pipeline={rollout.id}"))
    expect(page.get_by_text(manual)).to_have_count(0)
    expect(page.get_by_text(by_pipeline)).to_be_visible()
    page.screenshot(path="/tmp/audit-journey-filtered.png", full_page=True)

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Export CSV").click()
    download = download_info.value
    assert download.suggested_filename == f"audit-project-{project.id}.csv"
    with open(download.path(), encoding="utf-8") as exported:
        rows = list(csv.DictReader(io.StringIO(exported.read())))
    assert [row["message"] for row in rows] == ["dark_mode on in Production"]
    assert rows[0]["actor"] == "Release pipeline Rollout"
    assert rows[0]["environment"] == "Production"

    page.reload()  # the filtered view is in the URL: a reload (or a shared link) keeps it
    expect(page.get_by_label("Pipeline")).to_have_value(str(rollout.id))
    expect(page.get_by_text(manual)).to_have_count(0)

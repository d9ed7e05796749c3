"""The zone picker keeps its ~600 options rendered (webapp/forms/calendar.ZoneSelect): what it
renders is exactly what WTForms' own select renders, whatever zone is selected."""

import pytest
from wtforms.widgets import Select

from webapp.forms.calendar import FreezeForm, WindowForm


@pytest.mark.parametrize("form_class", [WindowForm, FreezeForm])
@pytest.mark.parametrize("zone", ["Europe/Berlin", "UTC", "Pacific/Auckland", "Mars/Olympus",
                                  "", None])
def test_the_kept_options_are_wtforms_own_markup(app, form_class, zone):
    with app.test_request_context():
        form = form_class(data={"timezone": zone})
        for attributes in ({}, {"class": "wide", "aria-describedby": "zone-help"}):
            assert str(form.timezone(**attributes)) == str(Select()(form.timezone, **attributes))


def test_the_selected_zone_is_the_only_one_selected(app):
    with app.test_request_context():
        berlin = str(WindowForm(data={"timezone": "Europe/Berlin"}).timezone())
        tokyo = str(WindowForm(data={"timezone": "Asia/Tokyo"}).timezone())
    assert berlin.count(" selected ") == tokyo.count(" selected ") == 1
    assert '<option selected value="Europe/Berlin">' in berlin
    assert '<option selected value="Asia/Tokyo">' in tokyo
    assert '<option value="Europe/Berlin">' in tokyo

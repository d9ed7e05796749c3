"""Forms of the change request screens: the list's filters (GET, in the URL) and a review."""

from flask_wtf import FlaskForm
from wtforms import HiddenField, SelectField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Length, Optional

from webapp.services.change_requests.workflow import MAX_COMMENT

TABS = (("open", "Open"), ("committed", "Committed"), ("rejected", "Rejected / closed"))


class FilterForm(FlaskForm):
    """Tab, environment and flag of the list; values outside the choices are refused (422)."""

    class Meta:
        csrf = False

    status = SelectField("Status", choices=[SelectChoice(v, label) for v, label in TABS],
                         default="open")
    environment = SelectField("Environment", choices=[], coerce=str, default="")
    flag = SelectField("Flag", choices=[], coerce=str, default="")

    def offer(self, environments, features) -> "FilterForm":
        self.environment.choices = [SelectChoice("", "All environments")] + [
            SelectChoice(str(e.id), e.name) for e in environments]
        self.flag.choices = [SelectChoice("", "All flags")] + [
            SelectChoice(str(fid), name) for fid, name in features]
        return self

    def query_args(self) -> dict[str, str]:
        args = {"status": self.status.data or "open"}
        if self.environment.data:
            args["environment"] = self.environment.data
        if self.flag.data:
            args["flag"] = self.flag.data
        return args


class ReviewForm(FlaskForm):
    """Approve or reject: an optional comment, and the hash of the changes the reviewer saw."""

    comment = TextAreaField("Comment (optional to approve, required to reject)", validators=[
        Optional(), Length(max=MAX_COMMENT, message=f"At most {MAX_COMMENT} characters.")])
    changes_hash = HiddenField()


class CommitForm(FlaskForm):
    """Commit: while the environment is frozen or the line is stopped, an admin may commit
    anyway by saying why (break glass: audited)."""

    break_glass_reason = TextAreaField(
        "Why commit during the freeze (break glass)", validators=[
            Optional(), Length(max=MAX_COMMENT, message=f"At most {MAX_COMMENT} characters.")])


class ActionForm(FlaskForm):
    """Commit, re-open, close: just the CSRF token."""

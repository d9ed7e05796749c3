from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import DataRequired, Length


class ProjectForm(FlaskForm):
    name = StringField("Project name", validators=[DataRequired(), Length(max=255)])

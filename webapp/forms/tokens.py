from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import DataRequired, Length


class TokenForm(FlaskForm):
    name = StringField("Token name", validators=[DataRequired(), Length(max=255)],
                       description="Where you use it, e.g. “deploy script”.")
